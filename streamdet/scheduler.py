"""Scheduling window evaluations: batching due windows across streams, and the live loop's lag rule.

:func:`run_due` evaluates every window that is due on a set of streams, putting the windows of all
streams that are due together into one inference call (up to the batch limit per call), in window
order per stream. :func:`run_locked` is the one way to call it: lock the streams (in a fixed order, so
two callers never deadlock), prepare each (feed it samples, drain a ring buffer), run what is due,
release. Pushed streams (``Stream.push``, ``Detector.push_many``, file mode) are paced by the caller, so
they are never behind: each call returns once every complete window has been evaluated.

Live streams are served by one :class:`LiveScheduler` thread per detector: the audio inputs
(:class:`streamdet.live.LiveStream`) and the network, file and piped sources of a
:class:`streamdet.sources.SourceGroup` alike. Each cycle it drains every live source (a ring buffer, or what
a source's reader decoded) into its stream, applies the lag rule, and runs the due windows of all of them
in one :func:`run_locked` call, so the newest windows of all live streams go through one batched call
each hop.

Lag rule (live only). A stream's *lag* is the audio received but not yet covered by an evaluated
window, in seconds (plus what still waits in the ring buffer). Normally it stays below one hop.
When inference is slower than real time the lag grows and the scheduler catches up by evaluating
all due windows in batches, in order (no window is skipped, timestamps stay exact). If the lag
exceeds ``max_lag`` seconds, the backlog is dropped: the stream jumps to its newest complete
window, the windows in between are never evaluated, the frames only they would have covered score
0 (open events end there), and the dropped audio is counted in ``Stream.skipped_samples`` and
reported. Timestamps still come from sample positions, so they never drift; the timeline remains
aligned with real time. The rule applies to sources whose ``drop_backlog`` is true (audio devices); the
streams of a source group are evaluated in full, as their producers pace them.

The protocols below are all the scheduler knows of a stream and of a live source; this module imports
no other part of the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import numpy as np

from .events import Update

__all__ = ["LiveScheduler", "LiveSource", "Runner", "Schedulable", "locked", "run_due", "run_locked"]

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Schedulable(Protocol):
    """What the scheduler needs of a stream (:class:`streamdet.stream.Stream` implements it)."""

    lock: Any  # a threading.RLock
    closed: bool

    def take_due(self, limit: int, final: bool = False) -> tuple[list[int], np.ndarray]:
        """Claim up to ``limit`` due windows: their indices and samples ``[n, window]``."""
        ...

    def consume(self, ks: list[int], framewise: np.ndarray, clipwise: np.ndarray, seconds: float) -> list[Update]:
        """Take the predictions of windows ``ks``; return the updates they produce."""
        ...

    def backlog_seconds(self) -> float:
        """Audio received but not covered by an evaluated window, in seconds."""
        ...

    def skip_to_newest(self) -> None:
        """The lag rule: jump to the newest complete window (the skipped audio is counted)."""
        ...


class LiveSource(Protocol):
    """What the live scheduler needs of a live input (:class:`streamdet.live.LiveStream` and the streams of a
    :class:`streamdet.sources.SourceGroup` implement it). ``drop_backlog``: whether the lag rule applies (a
    device's backlog is dropped; a source paced by its producer, such as a pipe, is evaluated in full)."""

    drop_backlog: bool

    @property
    def stream(self) -> Schedulable:
        """The stream the source feeds."""
        ...

    def drain(self) -> None:
        """Move the captured audio into the stream (its lock is held)."""
        ...

    def deliver(self, updates: list[Update]) -> None:
        """Hand the updates of a cycle to the consumer."""
        ...

    def fail(self, exc: BaseException) -> None:
        """Report an error of the scheduler thread to the consumer."""
        ...


S = TypeVar("S", bound=Schedulable)


@contextmanager
def locked(streams: Sequence[Schedulable]) -> Iterator[None]:
    """Hold the locks of ``streams`` (acquired in ``id`` order, released in reverse)."""
    order = sorted(dict.fromkeys(streams), key=id)
    for s in order:
        s.lock.acquire()
    try:
        yield
    finally:
        for s in reversed(order):
            s.lock.release()


def run_due(runner: Runner, streams: Sequence[S], batch_limit: int, final: Sequence[S] = ()) -> dict[S, list[Update]]:
    """Evaluate all due windows of ``streams`` (``final`` ones up to their end); return their updates.

    The caller holds the streams' locks (use :func:`run_locked`). Windows due at the same time on
    different streams share inference calls; each call takes at most ``batch_limit`` windows.
    """
    out: dict[S, list[Update]] = {s: [] for s in streams}
    finals = {id(s) for s in final}
    while True:
        jobs = []
        room = batch_limit
        for s in streams:
            ks, windows = s.take_due(room, final=id(s) in finals)
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
            out[s].extend(s.consume(ks, framewise[i : i + n], clipwise[i : i + n], elapsed * n / len(batch)))
            i += n


def run_locked(runner: Runner, batch_limit: int, streams: Sequence[S], prepare: Callable[[S], object] | None = None,
               final: Sequence[S] = ()) -> dict[S, list[Update]]:
    """Lock ``streams``, call ``prepare`` on each, evaluate what is due (:func:`run_due`), release the locks."""
    with locked(streams):
        if prepare is not None:
            for s in streams:
                prepare(s)
        return run_due(runner, streams, batch_limit, final)


class LiveScheduler:
    """One thread serving every live source of a detector (see the module docstring).

    ``runner`` and ``autostart`` are public: a test or a custom loop may wrap the runner, or set
    ``autostart = False`` before the first source is added and call :meth:`cycle` itself.
    """

    def __init__(self, runner: Runner, batch_limit: int, hop_seconds: float, max_lag: float,
                 autostart: bool = True) -> None:
        self.runner = runner
        self.batch_limit = batch_limit
        self.autostart = autostart
        self.max_lag = max_lag
        self._poll = min(0.02, hop_seconds / 8)
        self._sources: list[LiveSource] = []
        self._lock = threading.Lock()
        self._cycle_lock = threading.RLock()  # held for a whole cycle, so that remove() waits for it to end
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def add(self, source: LiveSource) -> None:
        """Start serving ``source``; starts the thread on first use (unless ``autostart`` is off)."""
        with self._lock:
            self._sources.append(source)
            if self.autostart and (self._thread is None or not self._thread.is_alive()):
                self._stop = False
                self._thread = threading.Thread(target=self._loop, name="streamdet-live", daemon=True)
                self._thread.start()

    def remove(self, source: LiveSource) -> None:
        """Stop serving ``source`` (its remaining audio is handled by its own close). Waits for a cycle in
        progress to deliver its updates, so none of the source's updates comes after what its close delivers."""
        with self._cycle_lock, self._lock:
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
        with self._cycle_lock:
            self._cycle()

    def _cycle(self) -> None:
        with self._lock:
            sources = list(self._sources)
        if not sources:
            return
        by_stream = {id(src.stream): src for src in sources}
        delivered: list[LiveSource] = []

        def prepare(stream: Schedulable) -> None:
            if stream.closed:  # closed by its own close() since the list was taken
                return
            src = by_stream[id(stream)]
            src.drain()
            if src.drop_backlog and stream.backlog_seconds() > self.max_lag:
                stream.skip_to_newest()
            delivered.append(src)

        results = run_locked(self.runner, self.batch_limit, [src.stream for src in sources], prepare)
        for src in delivered:
            src.deliver(results[src.stream])

    def _loop(self) -> None:
        while not self._stop:
            try:
                self.cycle()
            except BaseException as exc:  # keep serving; the sources report it
                self.errors.append(exc)
                for src in list(self._sources):
                    src.fail(exc)
            self._wake.wait(self._poll)
            self._wake.clear()
