"""Progress of a ``streamdet batch`` run on stderr: files and hours of audio done, throughput, ETA.

The in-process engine reports each file as it finishes; on Ray the driver watches the status parts landing in
the output folder (:class:`PartWatcher`), which is what a resumed run would count as done too.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from .runtime import InputFile, is_uri

REPORT_SECONDS = 2.0  # at most one progress line this often (and one at the end)


def header_seconds(items: Iterable[InputFile]) -> float | None:
    """The total audio of the local inputs by their headers (cheap: no decoding); None when some cannot be told
    (URIs, unreadable headers): the ETA then counts files."""
    import soundfile as sf

    total = 0.0
    for item in items:
        if item.problem is not None:
            continue
        if is_uri(item.path):
            return None
        try:
            info = sf.info(item.path)
        except Exception:
            return None
        total += info.frames / info.samplerate if info.samplerate else 0.0
    return total


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts finished inputs and prints a line at most every ``interval`` seconds."""

    def __init__(self, total_files: int, total_seconds: float | None, out: IO[str] | None = None,
                 interval: float = REPORT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.total_files = total_files
        self.total_seconds = total_seconds
        self.out = out or sys.stderr
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.files = self.errors = 0
        self.audio = self.compute = 0.0
        self._last = float("-inf")
        self._lock = threading.Lock()

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Count finished inputs (their status rows); print a line when one is due."""
        with self._lock:
            for row in rows:
                self.files += 1
                self.errors += row.get("status") != "ok"
                self.audio += row.get("duration") or 0.0
                self.compute += row.get("compute_seconds") or 0.0
            if self.clock() - self._last >= self.interval:
                self._print()

    def line(self) -> str:
        """The progress line: ``files``, hours of audio, throughput (audio hours per hour), ETA, errors."""
        elapsed = max(1e-9, self.clock() - self.start)
        speed = self.audio / elapsed
        parts = [f"{self.files}/{self.total_files} files"]
        hours = f"{self.audio / 3600:.2f}"
        if self.total_seconds:
            hours += f"/{self.total_seconds / 3600:.2f}"
        parts.append(f"{hours} h of audio")
        parts.append(f"{speed:.0f} h/h (x{speed:.0f} real time)" if self.audio else "0 h/h")
        left = None
        if self.files >= self.total_files:
            left = 0.0
        elif self.total_seconds and speed > 0:
            left = max(0.0, self.total_seconds - self.audio) / speed
        elif self.files:
            left = (self.total_files - self.files) * elapsed / self.files
        parts.append(f"ETA {_clock(left)}" if left is not None else "ETA ?")
        if self.errors:
            parts.append(f"{self.errors} error(s)")
        return "batch: " + ", ".join(parts)

    def _print(self) -> None:
        self._last = self.clock()
        print(self.line(), file=self.out, flush=True)

    def finish(self) -> None:
        """Print the last line."""
        with self._lock:
            self._print()


class PartWatcher:
    """Feeds :class:`Progress` from the status parts appearing in ``status_dir`` (a thread, every ``period`` s)."""

    def __init__(self, status_dir: Path, progress: Progress, period: float = 1.0) -> None:
        self.status_dir = status_dir
        self.progress = progress
        self.period = period
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="batch-progress")

    def __enter__(self) -> PartWatcher:
        self.seen = {p.name for p in self.status_dir.glob("part-*.jsonl")}  # an earlier run's: not this run's
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.poll()

    def poll(self) -> None:
        """Count the parts that landed since the last poll."""
        for part in sorted(self.status_dir.glob("part-*.jsonl")):
            if part.name not in self.seen:
                self.seen.add(part.name)
                try:
                    rows = [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line]
                except (OSError, ValueError):
                    continue
                self.progress.add(rows)
