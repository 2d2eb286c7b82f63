"""Scheduling window evaluations: batching due windows across streams, and the live loop's lag rule.

:func:`run_due` evaluates every window that is due on a set of streams, putting the windows of all
streams that are due together into one inference call (up to the session's batch limit per call),
in window order per stream. Pushed streams (``Stream.push``, ``Detector.push_many``, file mode) are
paced by the caller, so they are never behind: each call returns once every complete window has
been evaluated.

Live streams are served by one :class:`LiveScheduler` thread per detector. Each cycle it drains
every live source's ring buffer into its stream, then calls :func:`run_due` on all of them, so the
newest windows of all live streams go through one batched call each hop.

Lag rule (live only). A stream's *lag* is the audio received but not yet covered by an evaluated
window, in seconds (plus what still waits in the ring buffer). Normally it stays below one hop.
When inference is slower than real time the lag grows and the scheduler catches up by evaluating
all due windows in batches, in order (no window is skipped, timestamps stay exact). If the lag
exceeds ``max_lag`` seconds, the backlog is dropped: the stream jumps to its newest complete
window, the windows in between are never evaluated, the frames only they would have covered score
0 (open events end there), and the dropped audio is counted in ``Stream.skipped_samples`` and
reported. Timestamps still come from sample positions, so they never drift; the timeline remains
aligned with real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .events import Update

if TYPE_CHECKING:
    from .detector import Stream

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def run_due(
    runner: Runner, streams: Sequence[Stream], batch_limit: int, final: Sequence[Stream] = ()
) -> dict[Stream, list[Update]]:
    """Evaluate all due windows of ``streams`` (``final`` ones up to their end); return their updates.

    The caller holds the streams' locks. Windows due at the same time on different streams share
    inference calls; each call takes at most ``batch_limit`` windows.
    """
    out: dict[Stream, list[Update]] = {s: [] for s in streams}
    finals = {id(s) for s in final}
    while True:
        jobs = []
        room = batch_limit
        for s in streams:
            ks, windows = s._take_due(room, final=id(s) in finals)
            if ks:
                jobs.append((s, ks, windows))
                room -= len(ks)
            if room <= 0:
                break
        if not jobs:
            return out
        batch = jobs[0][2] if len(jobs) == 1 else np.concatenate([j[2] for j in jobs])
        t0 = time.perf_counter()
        framewise, clipwise = runner(batch)
        elapsed = time.perf_counter() - t0
        i = 0
        for s, ks, _ in jobs:
            n = len(ks)
            out[s].extend(s._consume(ks, framewise[i : i + n], clipwise[i : i + n], elapsed * n / len(batch)))
            i += n


class LiveScheduler:
    """One thread serving every live source of a detector (see the module docstring)."""

    def __init__(
        self, runner: Runner, batch_limit: int, hop_seconds: float, max_lag: float, autostart: bool = True
    ) -> None:
        """``autostart=False`` never starts the thread: call :meth:`cycle` yourself (tests, custom loops)."""
        self._runner = runner
        self.autostart = autostart
        self._batch_limit = batch_limit
        self._poll = min(0.02, hop_seconds / 8)
        self.max_lag = max_lag
        self._sources: list = []  # LiveStream objects
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def add(self, source) -> None:
        """Start serving ``source`` (a LiveStream); starts the thread on first use."""
        with self._lock:
            self._sources.append(source)
            if self.autostart and (self._thread is None or not self._thread.is_alive()):
                self._stop = False
                self._thread = threading.Thread(target=self._loop, name="streamdet-live", daemon=True)
                self._thread.start()

    def remove(self, source) -> None:
        """Stop serving ``source`` (its remaining audio is handled by its own close)."""
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)

    def stop(self) -> None:
        """Stop the thread (after the current cycle)."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def cycle(self) -> None:
        """One scheduling cycle: drain rings, apply the lag rule, evaluate due windows in one batch."""
        with self._lock:
            sources = list(self._sources)
        if not sources:
            return
        streams = [src.stream for src in sources]
        locks = sorted(streams, key=id)
        for s in locks:
            s._lock.acquire()
        try:
            active = []
            for src in sources:
                if src.stream.closed:
                    continue
                src._drain()
                if src.stream._backlog_seconds() > self.max_lag:
                    src.stream._skip_to_newest()
                active.append(src)
            results = run_due(self._runner, [src.stream for src in active], self._batch_limit)
        finally:
            for s in reversed(locks):
                s._lock.release()
        for src in active:
            src._deliver(results[src.stream])

    def _loop(self) -> None:
        while not self._stop:
            try:
                self.cycle()
            except BaseException as exc:  # keep serving; the sources report it
                self.errors.append(exc)
                for src in list(self._sources):
                    src._fail(exc)
            self._wake.wait(self._poll)
            self._wake.clear()
