"""``streamdet file PATH...``: detect events in audio files and folders.

Results go to stdout (or ``--output``) in the chosen format, file by file as each finishes; everything
else (model line, progress bars, per-file errors, the summary) goes to stderr, so the output pipes cleanly.
A file that cannot be used (corrupt, unsupported, empty, missing) is reported with its name and reason
and the others still run; the exit code is then 1. Usage errors exit 2, Ctrl-C exits 130.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import typer

from ..audio_io import AUDIO_EXTENSIONS  # what a folder is searched for; named files are tried whatever they are
from .common import error, fail, load_detector, model_line, warn
from .options import DeviceOption, ModelOption, with_detection_options
from .output import FORMATS, SUFFIX_FORMATS, make_writer
from .text import printable

if TYPE_CHECKING:
    from ..detector import Detector, FileRun
    from ..events import Event

PROGRESS_MIN_SECONDS = 30.0  # a progress bar for files at least this long, on a terminal


def collect_inputs(paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand folders (recursively, audio extensions, sorted); return ``(files, problems)``.

    A folder entry with an audio extension that cannot be read (a broken symbolic link, a link loop, a socket
    or device) is a problem, reported by name, not skipped silently."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for path in paths:
        if str(path) == "-":  # standard input (issue 20): decoded with PyAV, see streamdet.sources.DecodedRun
            files.append(path)
        elif path.is_dir():
            found: list[Path] = []
            reported = len(problems)
            for entry in sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
                problem = _entry_problem(entry)
                if problem is None:
                    found.append(entry)
                elif problem:
                    problems.append((str(entry), problem))
            if not found and len(problems) == reported:
                problems.append((str(path), f"folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"))
            files.extend(found)
        elif path.is_file() and path.stat().st_size == 0:
            problems.append((str(path), "empty file (0 bytes)"))
        elif path.exists():
            files.append(path)
        elif path.is_symlink():
            problems.append((str(path), _entry_problem(path) or "unreadable"))
        else:
            problems.append((str(path), "no such file or directory"))
    unique = list(dict.fromkeys(files))
    return unique, problems


def _entry_problem(path: Path) -> str | None:
    """Why a folder entry cannot be read as audio; None to read it (a regular file or a FIFO), "" to pass over
    it silently (a folder: its contents are searched)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink():
            if exc.errno == errno.ENOENT:
                return f"broken symbolic link (to {os.readlink(path)})"
            return f"unusable symbolic link ({exc.strerror})"
        return exc.strerror or str(exc)
    if stat.S_ISDIR(mode):
        return ""
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return None
    return "not a regular file (a socket or a device)"


class HoldInterrupt:
    """Hold Ctrl-C off while a file's results are written and counted, then raise it: the
    ``interrupted after N of M file(s)`` line always matches what was written. A no-op outside the main
    thread (signal handlers can only be set there) and when SIGINT is ignored."""

    def __enter__(self) -> HoldInterrupt:
        self.pending = False
        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.previous is None:
            return
        signal.signal(signal.SIGINT, self.previous)
        if self.pending and self.previous is not signal.SIG_IGN and exc_type is None:
            raise KeyboardInterrupt


def _plot_name(audio: Path, used: set[str]) -> str:
    stem = audio.stem or "audio"
    name, i = f"{stem}.png", 2
    while name in used:
        name, i = f"{stem}_{i}.png", i + 1
    used.add(name)
    return name


@with_detection_options
def file_command(
    paths: list[Path] = typer.Argument(..., help="Audio files and/or folders (searched recursively).",
                                       show_default=False),
    model: ModelOption = None,
    output_format: str | None = typer.Option(
        None, "--format", "-f", help="table, jsonl, csv or tsv (DCASE). Default: table on a terminal, "
                                     "else from the --output extension, else jsonl.", show_default=False),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the results to this file instead of "
                                                                   "stdout.", show_default=False),
    plot: Path | None = typer.Option(None, "--plot", help="Write one PNG per file into this folder: spectrogram, "
                                                          "class scores, events (needs the `plot` extra).",
                                     show_default=False),
    device: DeviceOption = "auto",
    *,
    settings: dict[str, Any],
) -> None:
    """Detect sound events in audio files and folders.

    Results go to stdout (or --output); progress and messages to stderr. Exit 0 when every file was
    processed, 1 when some could not be (each is reported), 2 on usage errors, 130 on Ctrl-C."""
    if output_format is None:
        if output is not None:
            output_format = SUFFIX_FORMATS.get(output.suffix.lower(), "jsonl")
        else:
            output_format = "table" if sys.stdout.isatty() else "jsonl"
    output_format = output_format.lower()
    if output_format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}", 2)
    if plot is not None:
        from .plotting import PlotUnavailableError, require_matplotlib

        try:
            require_matplotlib()
        except PlotUnavailableError as exc:
            fail(str(exc), 2)
        if plot.exists() and not plot.is_dir():
            fail(f"--plot {plot}: exists and is not a folder", 2)
    from ..session import usable_cores

    settings["threads"] = settings["threads"] or usable_cores()  # file mode: every core (no live audio here)
    files, problems = collect_inputs(paths)
    det = load_detector(model, device, settings)
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    err.print(model_line(det), markup=False, soft_wrap=True)
    for name, reason in problems:
        error(f"{name}: {reason}")
    failed = len(problems)
    n_events = 0
    done = 0
    t0 = time.perf_counter()
    if output is not None:
        try:
            out: IO[str] = output.open("w", encoding="utf-8", errors="surrogateescape", newline="")
        except OSError as exc:
            fail(f"--output {output}: {exc.strerror or exc}", 2)
    else:
        out = sys.stdout
        if hasattr(out, "reconfigure"):  # a non-UTF-8 file name is written as its bytes, not a UnicodeEncodeError
            out.reconfigure(errors="surrogateescape")
    writer = make_writer(output_format, out, color=output is None and output_format == "table" and
                         sys.stdout.isatty())
    used_png: set[str] = set()
    try:
        for path in files:
            run = _detect(det, path, err, record_scores=plot is not None)
            if run is None:
                failed += 1
                continue
            events = sorted(run.events, key=lambda e: (e.onset, e.offset, e.label))
            with HoldInterrupt():
                writer.add(str(path), events, run.duration)
                done += 1
                n_events += len(events)
            if plot is not None and not _plot(det, path, run, events, plot, used_png):
                failed += 1  # the results are out; the plot is what failed
        writer.finish()
    except KeyboardInterrupt:
        writer.finish()
        typer.echo(f"interrupted after {done} of {len(files)} file(s)", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `streamdet file ... | head`: the reader went away; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(1) from None
    finally:
        if output is not None:
            out.close()
    elapsed = time.perf_counter() - t0
    summary = f"{done} file(s), {n_events} event(s) in {elapsed:.1f} s"
    if output is not None:
        summary += f"; results in {printable(output)}"
    if failed:
        summary += f"; {failed} input(s) failed"
    typer.echo(summary, err=True)
    if failed:
        raise typer.Exit(1)


def _detect(det: Detector, path: Path, err: Any, record_scores: bool) -> FileRun | None:
    """Run one file (a progress bar on a terminal for long files); return the finished run, or None when
    it failed (reported on stderr with the file name and the reason)."""
    from ..audio_io import AudioFileError

    name = str(path)
    progress_ctx: Any = nullcontext()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = _open_input(det, path, name, record_scores)
            if err.is_terminal and run.duration >= PROGRESS_MIN_SECONDS:
                from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

                progress_ctx = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                        TaskProgressColumn(), TimeRemainingColumn(), console=err, transient=True)
            with progress_ctx as progress:
                if progress is not None:
                    task = progress.add_task(printable(path.name), total=run.duration)

                    def callback(done: float, total: float) -> None:
                        progress.update(task, completed=done)

                    run.progress = callback
                run.run()
        for w in caught:
            warn(str(w.message))
    except AudioFileError as exc:
        error(f"{exc.path}: {exc.reason}")
        return None
    except (OSError, ValueError, RuntimeError) as exc:  # anything else about this one input
        error(f"{name}: {exc}")
        return None
    return run


def _open_input(det: Detector, path: Path, name: str, record_scores: bool) -> Any:
    """A FileRun, or for ``-`` a run over standard input (any format ffmpeg reads; the stream extra)."""
    if str(path) == "-":
        from ..sources import DecodedRun

        return DecodedRun(det, "-", name=name, record_scores=record_scores)
    return det.open_file(path, name=name, record_scores=record_scores)


def _plot(det: Detector, path: Path, run: FileRun, events: list[Event], plot: Path, used_png: set[str]) -> bool:
    """Write the file's PNG into ``plot``; False (reported) when that failed."""
    from .plotting import plot_file

    png = plot / _plot_name(path, used_png)
    track = run.stream.score_track()
    try:
        plot_file(png, path, det.labels, track.scores, track.frame_seconds, events, run.duration,
                  det.thresholds, title=f"{path}  —  {det.session.path.name}, hop {det.hop:g} s")
    except Exception as exc:  # a plot problem must not lose the results
        error(f"{path}: plot failed ({type(exc).__name__}: {exc})")
        return False
    typer.echo(printable(f"plot: {png}"), err=True)
    return True
