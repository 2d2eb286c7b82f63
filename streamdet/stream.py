"""A :class:`Stream`: one audio source on an :class:`~streamdet.engine.Engine`.

Samples pushed at any rate and channel count are sanitised (NaN/inf → 0, counted), downmixed, resampled to
the model rate (stateful soxr), kept in a short history, and every ``hop`` a window ending at the newest
hop boundary is evaluated (batched with the other streams that are due, :mod:`streamdet.scheduler`). Window
predictions are stitched into one score track (:mod:`streamdet.stitching`), mapped to the engine's labels when
it has a label map (:mod:`streamdet.label_map`), post-processed and turned into onset/offset updates
(:mod:`streamdet.tracker`).

Thread safety: every method takes the stream's lock (``lock``, re-entrant). Besides the user API (``push``,
``push_lost``, ``close``, the counters), a stream implements the scheduler's protocol
(:class:`~streamdet.scheduler.Schedulable`: ``take_due``, ``consume``, ``backlog_seconds``,
``skip_to_newest``) and the feeding methods a live source uses with the lock held (``feed``, ``feed_lost``,
``add_lost``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .audio_io import StreamResampler, sanitize, to_mono, warn_nonfinite
from .engine import Engine
from .events import Event, Update
from .scores import ScoreTrack
from .stitching import Stitcher
from .tracker import EventTracker

__all__ = ["Stream", "UpdateCallback"]

UpdateCallback = Callable[[Update], Any]


class Stream:
    """One audio source. Create with :meth:`streamdet.Detector.stream` (or from an :class:`Engine`).

    Counters: ``input_samples`` (at the input rate), ``lost_samples`` (input that never arrived,
    zero-filled, input rate), ``nonfinite_samples``, ``skipped_samples`` (model rate, dropped by the
    live lag rule), ``windows`` (evaluated). ``latest_scores`` is the newest final frame of the score
    track (for meters), ``latest_clipwise`` the newest window's clip-level scores (both of the engine's labels,
the label map applied).
    """

    def __init__(
        self,
        engine: Engine,
        sample_rate: float,
        channels: int = 1,
        name: str = "mic",
        on_event: UpdateCallback | None = None,
        *,
        record_scores: bool = False,
        source: str | None = None,
    ) -> None:
        if int(channels) != channels or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels}")
        self.engine = engine
        self.name = name
        self.source = source or name
        self.sample_rate = float(sample_rate)
        self.channels = int(channels)
        self.on_event = on_event
        self._t = engine.timeline
        self._resampler = StreamResampler(self.sample_rate, self._t.sample_rate)
        self._stitcher = Stitcher(self._t, engine.model_classes)
        self._tracker = EventTracker(engine.labels, engine.rules, self._t.frame_seconds, name)
        self.lock = threading.RLock()
        self._hist = np.zeros(0, np.float32)  # model-rate samples from absolute position _hist_start
        self._hist_start = 0
        self._received = 0  # model-rate samples received
        self._next_k = 1  # next window to evaluate
        self.closed = False
        self.input_samples = 0
        self.lost_samples = 0
        self.nonfinite_samples = 0
        self.skipped_samples = 0
        self.windows = 0
        self.inference_seconds = 0.0
        self.latest_scores = np.zeros(len(engine.labels), np.float32)
        self.latest_clipwise = np.zeros(len(engine.labels), np.float32)
        self._record: list[np.ndarray] | None = [] if record_scores else None
        self._warned_nonfinite = False
        self._frame_limit: int | None = None

    # --- public ---------------------------------------------------------------------------
    def push(self, samples: np.ndarray) -> list[Update]:
        """Add ``samples`` ([frames] mono or [frames, channels]); return the updates this produced."""
        with self.lock:
            updates = self.engine.run([self], lambda s: (s.check_open(), s.feed(samples)))[self]
            self.emit(updates)
            return updates

    def push_lost(self, frames: int) -> list[Update]:
        """Record ``frames`` input frames that were lost (dropped blocks): they count as silence on the
        timeline, so later samples keep their true timestamps, and are added to ``lost_samples``."""
        with self.lock:
            updates = self.engine.run([self], lambda s: (s.check_open(), s.feed_lost(int(frames))))[self]
            self.emit(updates)
            return updates

    def close(self) -> list[Update]:
        """End the stream: evaluate the tail, close open events at the end time, return the last updates."""
        with self.lock:
            if self.closed:
                return []
            updates = self.engine.run([self], Stream._end, final=[self])[self]
            first, frames = self._stitcher.flush(self._received)
            updates += self._frames(first, frames)
            updates += self._tracker.close(self._received / self._t.sample_rate)
            self.closed = True
            self._hist = np.zeros(0, np.float32)
            self.emit(updates)
            return updates

    @property
    def labels(self) -> list[str]:
        """Class labels, in output order."""
        return list(self.engine.labels)

    @property
    def events(self) -> list[Event]:
        """Events that have ended so far (in order of their end)."""
        return list(self._tracker.closed_events)

    @property
    def open_events(self) -> list[Event]:
        """Events whose onset was reported and that have not ended."""
        with self.lock:
            return self._tracker.open_events()

    @property
    def position(self) -> float:
        """Seconds of audio received (stream clock)."""
        return self._received / self._t.sample_rate

    @property
    def processed(self) -> float:
        """Seconds of audio covered by evaluated windows."""
        return min(self._received, (self._next_k - 1) * self._t.hop) / self._t.sample_rate

    @property
    def lost_seconds(self) -> float:
        """Lost input in seconds."""
        return self.lost_samples / self.sample_rate

    @property
    def wall_origin(self) -> float | None:
        """Wall-clock time (epoch seconds) of the stream's sample 0, for live input; else None."""
        return self._tracker.wall_origin

    @wall_origin.setter
    def wall_origin(self, value: float | None) -> None:
        self._tracker.wall_origin = value

    def scores(self) -> dict[str, float]:
        """Newest final score per label (for level meters)."""
        return dict(zip(self.engine.labels, self.latest_scores.tolist(), strict=True))

    def score_track(self) -> ScoreTrack:
        """The stitched score track so far; needs ``record_scores=True``."""
        if self._record is None:
            raise RuntimeError("create the stream with record_scores=True to keep its score track")
        with self.lock:
            empty = np.zeros((0, len(self.engine.labels)), np.float32)
            scores = np.concatenate(self._record) if self._record else empty
            duration = self.position if self.closed else None
        return ScoreTrack(self.engine.labels, self._t.frame_seconds, scores, self.name, duration)

    def stats(self) -> dict[str, Any]:
        """Counters and figures for a status line."""
        return {
            "stream": self.name,
            "position_s": self.position,
            "processed_s": self.processed,
            "lag_s": self.backlog_seconds(),
            "input_samples": self.input_samples,
            "lost_samples": self.lost_samples,
            "lost_s": self.lost_seconds,
            "nonfinite_samples": self.nonfinite_samples,
            "skipped_s": self.skipped_samples / self._t.sample_rate,
            "windows": self.windows,
            "inference_s": self.inference_seconds,
        }

    # --- feeding (with the lock held: Engine.run's prepare step, a live source's drain) -------------
    def check_open(self) -> None:
        """Raise RuntimeError when the stream is closed."""
        if self.closed:
            raise RuntimeError(f"stream {self.name!r} is closed")

    def emit(self, updates: list[Update]) -> None:
        """Pass ``updates`` to the ``on_event`` callback (if any)."""
        if self.on_event is not None:
            for u in updates:
                self.on_event(u)

    def feed(self, samples: np.ndarray) -> None:
        """Sanitise, downmix and resample ``samples`` into the history (no window is evaluated here)."""
        x = np.asarray(samples)
        if x.ndim == 2 and x.shape[1] != self.channels:
            raise ValueError(f"stream {self.name!r} has {self.channels} channels, got {x.shape[1]}")
        if x.ndim == 1 and self.channels != 1:
            if x.size % self.channels:
                raise ValueError(f"{x.size} interleaved samples is not a multiple of {self.channels} channels")
            x = x.reshape(-1, self.channels)
        if x.ndim not in (1, 2):
            raise ValueError(f"samples must be [frames] or [frames, channels], got shape {x.shape}")
        if x.shape[0] == 0:
            return
        if not np.issubdtype(x.dtype, np.floating):
            x = _int_to_float(x)
        x, bad = sanitize(x.astype(np.float32, copy=False))
        if bad:
            self.nonfinite_samples += bad
            if not self._warned_nonfinite:
                self._warned_nonfinite = True
                warn_nonfinite(self.source, bad)
        self.input_samples += x.shape[0]
        self._append(self._resampler.process(to_mono(x)))

    def feed_lost(self, frames: int) -> None:
        """Feed ``frames`` lost input frames: zeros on the timeline, counted in ``lost_samples``."""
        if frames <= 0:
            return
        self.lost_samples += frames
        self.input_samples += frames
        chunk = max(1, int(self.sample_rate))
        for start in range(0, frames, chunk):
            self._append(self._resampler.process(np.zeros(min(chunk, frames - start), np.float32)))

    def add_lost(self, frames: int) -> None:
        """Count ``frames`` of already fed audio as lost (zeros a capture buffer put in their place)."""
        self.lost_samples += int(frames)

    def _end(self) -> None:
        self._append(self._resampler.flush())
        self._frame_limit = -(-self._received // self._t.frame)  # frames past the end are not reported

    def _append(self, y: np.ndarray) -> None:
        if y.size:
            self._hist = np.concatenate([self._hist, y]) if self._hist.size else np.array(y, np.float32)
            self._received += y.size

    # --- the scheduler's protocol (with the lock held) ------------------------------------------------
    def take_due(self, limit: int, final: bool = False) -> tuple[list[int], np.ndarray]:
        """Claim up to ``limit`` due windows; return their indices and samples [n, W]."""
        t = self._t
        if self.closed:
            return [], np.zeros((0, t.window), np.float32)
        last = t.windows_at_end(self._received) if final else t.windows_due(self._received)
        ks = list(range(self._next_k, min(last, self._next_k + limit - 1) + 1))
        if not ks:
            return [], np.zeros((0, t.window), np.float32)
        out = np.zeros((len(ks), t.window), np.float32)
        hist_end = self._hist_start + self._hist.size
        for i, k in enumerate(ks):
            a, b = k * t.hop - t.window, k * t.hop
            lo, hi = max(a, self._hist_start), min(b, hist_end)
            if lo < hi:
                out[i, lo - a : hi - a] = self._hist[lo - self._hist_start : hi - self._hist_start]
        self._next_k = ks[-1] + 1
        self._trim()
        return ks, out

    def consume(self, ks: list[int], framewise: np.ndarray, clipwise: np.ndarray, seconds: float) -> list[Update]:
        """Stitch the predictions of windows ``ks``; return the updates of the frames they finalised."""
        updates: list[Update] = []
        self.windows += len(ks)
        self.inference_seconds += seconds
        for i, k in enumerate(ks):
            first, frames = self._stitcher.add(k, framewise[i])
            updates += self._frames(first, frames)
        self.latest_clipwise = np.array(self.engine.map_scores(clipwise[-1]), np.float32)
        return updates

    def backlog_seconds(self) -> float:
        """Audio received but not yet covered by an evaluated window, in seconds."""
        return max(0, self._received - (self._next_k - 1) * self._t.hop) / self._t.sample_rate

    def skip_to_newest(self) -> None:
        """Lag rule: jump to the newest complete window; the skipped audio is never evaluated."""
        newest = self._t.windows_due(self._received)
        if newest > self._next_k:
            self.skipped_samples += (newest - self._next_k) * self._t.hop
            self._next_k = newest
            self._trim()

    def _trim(self) -> None:
        keep_from = max(0, self._next_k * self._t.hop - self._t.window)
        drop = keep_from - self._hist_start
        if drop > 0:
            self._hist = self._hist[drop:].copy() if drop < self._hist.size else np.zeros(0, np.float32)
            self._hist_start = keep_from

    def _frames(self, first: int, frames: np.ndarray) -> list[Update]:
        if self._frame_limit is not None:
            frames = frames[: max(0, self._frame_limit - first)]
        if frames.shape[0] == 0:
            return []
        frames = self.engine.map_scores(frames)  # the label map, if any: max over each group's members
        self.latest_scores = frames[-1].copy()
        if self._record is not None:
            self._record.append(frames)
        return self._tracker.push(frames)


def _int_to_float(x: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return (x.astype(np.float32) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    raise ValueError(f"unsupported sample type {x.dtype}")
