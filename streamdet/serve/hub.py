"""Feeding every open stream's audio to the shared detectors from one inference thread.

The connections hand their decoded audio to the :class:`InferenceHub` (``feed``); at most every
``batch_interval`` seconds the hub's loop takes everything that has arrived on all streams and, in its single
worker thread, calls :meth:`Detector.push_many` once per detector with all of it, so windows of different
streams that fall due together run as one batch. While a round runs, new audio collects for the next one. Its
updates (and the latest scores, for streams that asked) go back to each connection's
:class:`~.send_queue.SendQueue`.

A stream with more than ``max_pending_seconds`` of audio waiting makes its connection stop reading until
the next round takes it (TCP back-pressure on the client). ``end`` pushes what is left and closes the
engine stream (open events end); a connection that vanishes is simply removed, and its audio and engine
stream are dropped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import ServerMetrics

if TYPE_CHECKING:
    from ..detector import Detector, Stream
    from ..events import Update

Deliver = Callable[[dict[str, Any]], Any]


class StreamSession:
    """The server side of one stream: its engine stream, the input waiting for inference, where results go."""

    def __init__(self, detector: Detector, stream: Stream, deliver: Deliver, scores: bool,
                 on_update: Callable[[Update], Any] | None = None) -> None:
        self.detector = detector
        self.stream = stream
        self.deliver = deliver
        self.on_update = on_update
        self.scores = scores
        self.pending: list[np.ndarray | int] = []  # audio blocks, and lost-frame counts where input was lost
        self.pending_frames = 0
        self.closing: asyncio.Future[list[Update]] | None = None
        self.drained = asyncio.Event()
        self.drained.set()
        self.last_scores_time = -math.inf
        self.gone = False

    def take(self) -> list[np.ndarray | int]:
        """Everything waiting, in order: audio blocks (joined when adjacent) and lost-frame counts."""
        out: list[np.ndarray | int] = []
        run: list[np.ndarray] = []
        for item in self.pending:
            if isinstance(item, int):
                if run:
                    out.append(run[0] if len(run) == 1 else np.concatenate(run))
                    run = []
                out.append(item)
            else:
                run.append(item)
        if run:
            out.append(run[0] if len(run) == 1 else np.concatenate(run))
        self.pending, self.pending_frames = [], 0
        self.drained.set()
        return out


class InferenceHub:
    """Runs every stream's due windows in one worker thread, batched across streams (see the module doc)."""

    def __init__(self, metrics: ServerMetrics, max_pending_seconds: float = 10.0, batch_interval: float = 0.05) -> None:
        self.metrics = metrics
        self.max_pending_seconds = max_pending_seconds
        self.batch_interval = batch_interval
        self.sessions: set[StreamSession] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="streamdet-inference")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the hub's loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop and the worker thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True, cancel_futures=True)

    def open(self, detector: Detector, stream: Stream, deliver: Deliver, scores: bool,
             on_update: Callable[[Update], Any] | None = None) -> StreamSession:
        """Register a new stream; results go to ``deliver`` (a message dict at a time), and each update to
        ``on_update`` too (an MQTT publisher: it never blocks)."""
        session = StreamSession(detector, stream, deliver, scores, on_update)
        self.sessions.add(session)
        self.metrics.open_streams.set(len(self.sessions))
        return session

    def remove(self, session: StreamSession) -> None:
        """Forget a stream (its connection ended or vanished); its waiting audio is dropped."""
        session.gone = True
        session.take()
        self.sessions.discard(session)
        self.metrics.open_streams.set(len(self.sessions))
        if session.closing is not None and not session.closing.done():
            session.closing.cancel()

    async def feed(self, session: StreamSession, samples: np.ndarray) -> None:
        """Queue decoded ``[frames, channels]`` audio; waits while too much of this stream's audio is waiting."""
        if samples.shape[0] == 0:
            return
        while session.pending_frames / session.stream.sample_rate >= self.max_pending_seconds:
            session.drained.clear()
            self._wake.set()
            await session.drained.wait()
        session.pending.append(samples)
        session.pending_frames += samples.shape[0]
        self.metrics.audio_seconds.labels(source="stream").inc(samples.shape[0] / session.stream.sample_rate)
        self._wake.set()

    def lost(self, session: StreamSession, frames: int) -> None:
        """Record ``frames`` of input the client lost (silence on the timeline, counted as lost audio)."""
        if frames > 0:
            session.pending.append(int(frames))
            self.metrics.lost_seconds.inc(frames / session.stream.sample_rate)
            self._wake.set()

    async def end(self, session: StreamSession) -> list[Update]:
        """Push what is waiting, then close the engine stream; returns its last updates (also delivered)."""
        session.closing = asyncio.get_running_loop().create_future()
        self._wake.set()
        return await session.closing

    # --- the loop ---------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = -math.inf
        while True:
            await self._wake.wait()
            wait = last + self.batch_interval - loop.time()
            if wait > 0:  # let the audio of every stream arriving within the interval join this round
                await asyncio.sleep(wait)
            self._wake.clear()
            last = loop.time()
            await self._run_round(loop)  # (its locals end with it: a vanished stream is not held here)

    async def _run_round(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = [(s, s.take(), s.closing is not None) for s in list(self.sessions)
                if s.pending or (s.closing is not None and not s.closing.done())]
        if not jobs:
            return
        try:
            results = await loop.run_in_executor(self._executor, self._round, jobs)
        except Exception as exc:  # inference failed: every stream of the round is told, and closed
            self.metrics.error("inference")
            for session, _, _ in jobs:
                session.deliver({"type": "error", "message": f"inference failed: {type(exc).__name__}: {exc}"})
                if session.closing is not None and not session.closing.done():
                    session.closing.set_exception(exc)
            return
        for session, updates in results:
            self._dispatch(session, updates)

    def _round(self, jobs: list[tuple[StreamSession, list[np.ndarray | int], bool]]
               ) -> list[tuple[StreamSession, list[Update]]]:
        """In the worker thread: one ``push_many`` per detector with every stream's audio, then the closes."""
        t0 = time.perf_counter()
        before = {session: session.stream.windows for session, _, _ in jobs}
        out: dict[StreamSession, list[Update]] = {session: [] for session, _, _ in jobs}
        shared: dict[int, list[StreamSession]] = {}
        for session, items, _ in jobs:
            if len(items) == 1 and not isinstance(items[0], int):
                shared.setdefault(id(session.detector), []).append(session)
            else:  # input lost in between: push in order, on its own
                for item in items:
                    out[session] += (session.stream.push_lost(item) if isinstance(item, int)
                                     else session.stream.push(item))
        batches = 0
        for sessions in shared.values():
            det = sessions[0].detector
            audio = {session.stream: items[0] for session, items, _ in jobs if session in sessions}
            results = det.push_many(audio)
            for session in sessions:
                out[session] += results[session.stream]
            batches += math.ceil(sum(s.stream.windows - before[s] for s in sessions) / det.session.batch_limit)
        for session, _, closing in jobs:
            if closing:
                out[session] += session.stream.close()
        windows = sum(session.stream.windows - before[session] for session in out)
        if windows:
            self.metrics.windows.labels(source="stream").inc(windows)
            self.metrics.batches.inc(max(1, batches))
            self.metrics.inference.observe(time.perf_counter() - t0)
        return list(out.items())
    def _dispatch(self, session: StreamSession, updates: list[Update]) -> None:
        """Back on the event loop: send the updates (and scores when due) to the stream's client."""
        if session.gone:
            return
        for u in updates:
            if u.type == "onset":
                self.metrics.events.labels(label=u.label).inc()
            session.deliver(update_message(u))
            if session.on_update is not None:
                session.on_update(u)
        # the closing cycle sends its scores too: a short stream sent whole before the first cycle (a loaded
        # server) still gets them before its end message
        if session.scores and (not session.stream.closed or session.stream.windows > 0):
            t = max(0.0, session.stream.processed - session.detector.lookahead)
            if t - session.last_scores_time >= session.detector.hop - 1e-9:
                session.last_scores_time = t
                session.deliver({"type": "scores", "time": round(t, 6), "position": round(session.stream.position, 6),
                                 "scores": {k: round(v, 4) for k, v in session.stream.scores().items()}})
        if session.closing is not None and not session.closing.done() and session.stream.closed:
            session.closing.set_result(updates)


def update_message(update: Update) -> dict[str, Any]:
    """An onset/offset as the JSON message of ``streamdet listen --format jsonl`` (wall_time only when known)."""
    message = update.to_dict()
    if message.get("wall_time") is None:
        message.pop("wall_time", None)
    return message
