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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .audio_io import StreamResampler, sanitize, to_mono, warn_nonfinite
from .engine import Engine
from .events import Event, Update
from .scores import ScoreTrack
from .stitching import Stitcher
from .tracker import EventTracker

__all__ = ["Stream", "UpdateCallback", "push_pieces"]

UpdateCallback = Callable[[Update], Any]


class Stream:
    """One audio source. Create with :meth:`streamdet.Detector.stream` (or from an :class:`Engine`).

    Counters: ``input_samples`` (at the input rate), ``lost_samples`` (input that never arrived,
    zero-filled, input rate), ``nonfinite_samples``, ``skipped_samples`` (model rate, dropped by the
    live lag rule), ``windows`` (evaluated). ``latest_scores`` is the newest final frame of the score
    track (for meters), ``latest_clipwise`` the newest window's clip-level scores (both of the engine's labels,
    the label map applied).

    Memory and cost: a push of any length is fed and evaluated in pieces of at most :attr:`piece_frames`
    input frames (:func:`push_pieces`), and the history keeps only the samples of windows not yet evaluated
    (:class:`_History`), so a stream holds at most about one window plus one batch of hops of model-rate
    audio however much is pushed at once, and the bookkeeping per sample is constant.
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
        self._hist = _History()  # model-rate samples of the windows not yet evaluated
        t = self._t
        piece_model = t.hop * engine.batch_limit  # model samples fed per piece: about one inference batch
        self.piece_frames = max(1, int(piece_model * self.sample_rate / t.sample_rate))
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
        """Add ``samples`` ([frames] mono or [frames, channels]); return the updates this produced.

        A long push is fed and evaluated in pieces (:func:`push_pieces`): memory and time do not depend on
        how the audio is chunked."""
        with self.lock:
            updates = push_pieces([(self, [samples])])[self]
            self.emit(updates)
            return updates

    def push_lost(self, frames: int) -> list[Update]:
        """Record ``frames`` input frames that were lost (dropped blocks): they count as silence on the
        timeline, so later samples keep their true timestamps, and are added to ``lost_samples``."""
        with self.lock:
            self.check_open()
            frames = int(frames)
            updates: list[Update] = []
            for start in range(0, max(frames, 1), self.piece_frames):
                n = min(self.piece_frames, frames - start)
                updates += self.engine.run([self], lambda s, n=n: s.feed_lost(n))[self]
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
            self._hist = _History()
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

    def as_frames(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` as ``[frames]`` (mono) or ``[frames, channels]`` (a view); ValueError naming the stream
        for a wrong shape or channel count, or a sample type that is not a number."""
        x = np.asarray(samples)
        if x.ndim == 2 and x.shape[1] != self.channels:
            raise ValueError(f"stream {self.name!r} has {self.channels} channels, got {x.shape[1]}")
        if x.ndim == 1 and self.channels != 1:
            if x.size % self.channels:
                raise ValueError(f"{x.size} interleaved samples is not a multiple of {self.channels} channels")
            x = x.reshape(-1, self.channels)
        if x.ndim not in (1, 2):
            raise ValueError(f"samples must be [frames] or [frames, channels], got shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"unsupported sample type {x.dtype}")
        return x

    def feed(self, samples: np.ndarray) -> None:
        """Sanitise, downmix and resample ``samples`` into the history (no window is evaluated here)."""
        x = self.as_frames(samples)
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
            self._hist.append(y)
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
        hist, hist_start = self._hist.view(), self._hist.start
        hist_end = hist_start + hist.size
        for i, k in enumerate(ks):
            a, b = k * t.hop - t.window, k * t.hop
            lo, hi = max(a, hist_start), min(b, hist_end)
            if lo < hi:
                out[i, lo - a : hi - a] = hist[lo - hist_start : hi - hist_start]
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
        self._hist.drop_before(max(0, self._next_k * self._t.hop - self._t.window))

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


def push_pieces(items: Sequence[tuple[Stream, Sequence[np.ndarray]]]) -> dict[Stream, list[Update]]:
    """Feed each stream its arrays and evaluate what is due, in rounds of one piece (at most
    :attr:`Stream.piece_frames` frames) per stream; return each stream's updates (not passed to ``on_event``:
    the caller emits them).

    All the streams must share one engine (``Detector.push_many`` checks it). Every array is checked first, so
    a bad one raises before any audio is fed; a closed stream raises RuntimeError. Windows due together on
    several streams share inference calls, as in one :meth:`Engine.run <streamdet.engine.Engine.run>`.
    Feeding in pieces keeps the history of every stream short and the bookkeeping linear in the audio's
    length, however large one push is."""
    streams = list(dict.fromkeys(s for s, _ in items))
    if not streams:
        return {}
    arrays: dict[int, list[np.ndarray]] = {id(s): [] for s in streams}
    for s, given in items:  # check everything before feeding anything
        s.check_open()
        arrays[id(s)] += [s.as_frames(samples) for samples in given]
    queues = {id(s): _pieces(s.piece_frames, arrays[id(s)]) for s in streams}
    out: dict[Stream, list[Update]] = {s: [] for s in streams}
    engine = streams[0].engine
    first = True
    while True:
        piece = {id(s): next(queues[id(s)], None) for s in streams}
        active = [s for s in streams if piece[id(s)] is not None]
        if not active and not first:
            return out
        first = False
        for s, updates in engine.run(active or streams, _feeder(piece)).items():
            out[s] += updates


def _feeder(piece: dict[int, np.ndarray | None]) -> Callable[[Stream], None]:
    def feed(stream: Stream) -> None:
        samples = piece[id(stream)]
        if samples is not None:
            stream.feed(samples)

    return feed


def _pieces(size: int, arrays: list[np.ndarray]) -> Iterator[np.ndarray]:
    for x in arrays:
        for start in range(0, x.shape[0], size):
            yield x[start : start + size]


class _History:
    """Model-rate samples from absolute position :attr:`start` on, appended at the end and dropped from the
    front. One buffer, compacted (or grown) only when an append does not fit, so each sample is copied a
    bounded number of times (no copy of the remaining history per evaluated batch)."""

    def __init__(self) -> None:
        self._buf = np.zeros(0, np.float32)
        self._lo = 0  # buffer index of absolute position `start`
        self._hi = 0  # buffer index one past the newest sample
        self.start = 0

    def view(self) -> np.ndarray:
        """The kept samples (a view, valid until the next append)."""
        return self._buf[self._lo : self._hi]

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer."""
        return self._buf.nbytes

    def append(self, y: np.ndarray) -> None:
        """Add ``y`` at the end."""
        n, live = y.size, self._hi - self._lo
        if self._hi + n > self._buf.size:
            need = live + n
            if 2 * need > self._buf.size:  # grow: at least twice what is needed now
                buf = np.empty(max(2 * need, 4096), np.float32)
                buf[:live] = self._buf[self._lo : self._hi]
                self._buf = buf
            else:  # compact in place: the dropped head is at least half the buffer
                self._buf[:live] = self._buf[self._lo : self._hi].copy()
            self._lo, self._hi = 0, live
        self._buf[self._hi : self._hi + n] = y
        self._hi += n

    def drop_before(self, position: int) -> None:
        """Forget the samples before absolute ``position``."""
        drop = min(position - self.start, self._hi - self._lo)
        if drop > 0:
            self._lo += drop
            self.start += drop


def _int_to_float(x: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return (x.astype(np.float32) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    raise ValueError(f"unsupported sample type {x.dtype}")
