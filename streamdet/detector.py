"""The public engine API of DESIGN.md §5: :class:`Detector` and :class:`Stream`.

A :class:`Detector` owns one ONNX Runtime session (shared by all its streams) and the settings:
hop, lookahead, thresholds and post-processing. A :class:`Stream` is one audio source: samples
pushed at any rate and channel count are sanitised (NaN/inf → 0, counted), downmixed, resampled
to the model rate (stateful soxr), kept in a short history, and every ``hop`` a window ending at
the newest hop boundary is evaluated. Window predictions are stitched into one score track
(:mod:`streamdet.stitching`), post-processed and turned into onset/offset updates
(:mod:`streamdet.tracker`).

File mode (:meth:`Detector.detect_file`) is exactly a stream fed from the file's blocks faster than
real time, so a file and a live stream over the same samples give the same events, and events do
not depend on how samples were chunked. (Onsets and offsets are identical; confidences agree to
float32 rounding, because ONNX Runtime may pick different kernels for different batch sizes.)

Thread safety: every Stream method takes the stream's lock; the session serialises its runs; the
Detector's settings are immutable after construction. Several threads may push to different
streams (or the same one) concurrently.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio_io import (
    DEFAULT_BLOCK_FRAMES,
    AudioFileError,
    StreamResampler,
    audio_info,
    read_blocks,
    sanitize,
    to_mono,
    warn_nonfinite,
)
from .events import Event, Update
from .model_metadata import ModelMetadata
from .postprocess import PostProcessing, SecondsSpec, ThresholdSpec, resolve_seconds, resolve_thresholds
from .scheduler import LiveScheduler, run_due
from .session import ModelSession
from .stitching import Stitcher, Timeline
from .tracker import EventTracker

__all__ = ["AudioFileError", "Detector", "FileRun", "ScoreTrack", "Stream"]

UpdateCallback = Callable[[Update], Any]
ProgressCallback = Callable[[float, float], Any]


@dataclass(frozen=True)
class ScoreTrack:
    """The stitched per-class score track of a stream (for plots): ``scores[j]`` covers frame ``j``."""

    labels: tuple[str, ...]
    frame_seconds: float
    scores: np.ndarray  # [frames, classes] float32
    stream: str = "stream"

    @property
    def times(self) -> np.ndarray:
        """Start time in seconds of each frame."""
        return np.arange(self.scores.shape[0]) * self.frame_seconds

    def __getitem__(self, label: str) -> np.ndarray:
        return self.scores[:, self.labels.index(label)]


class Detector:
    """Sliding-window sound-event detection with an exported streamdet ONNX model.

    Args:
        model: path to a ``.onnx`` model; None loads the bundled default model.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        hop: seconds between window evaluations (rounded to the model's grid, see ``.hop``).
        lookahead: seconds of later windows averaged into each frame (whole hops; latency vs accuracy).
        thresholds: None (model metadata, else 0.5/0.3), a number, an ``(on, off)`` pair or a
            ``{label: value}`` mapping; see :mod:`streamdet.postprocess`.
        median_filter: width of the median filter in seconds (0 = off).
        min_duration, min_gap: seconds; None uses the model's tuned per-class values (``postprocess``
            metadata, else 0), a number sets every class, ``{label: seconds}`` the named classes.
        threads: CPU threads for ONNX Runtime (default: cores − 1).
        max_batch: most windows per inference call.
        max_lag: seconds a live stream may fall behind before its backlog is dropped.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        device: str = "auto",
        hop: float = 0.5,
        lookahead: float = 0.0,
        thresholds: ThresholdSpec = None,
        *,
        median_filter: float = 0.0,
        min_duration: SecondsSpec = None,
        min_gap: SecondsSpec = None,
        threads: int | None = None,
        max_batch: int = 16,
        max_lag: float = 10.0,
        io_binding: bool | None = None,
    ) -> None:
        self.session = ModelSession(model, device=device, threads=threads, max_batch=max_batch, io_binding=io_binding)
        meta = self.session.metadata
        self.timeline = Timeline.create(meta, hop, lookahead)
        self.thresholds = resolve_thresholds(meta.labels, meta.thresholds, thresholds)
        self.min_duration = resolve_seconds("min_duration", meta.labels, meta.postprocess, min_duration)
        self.min_gap = resolve_seconds("min_gap", meta.labels, meta.postprocess, min_gap)
        self.post = PostProcessing.create(
            self.thresholds, meta.labels, self.timeline.frame_seconds, median_filter, self.min_duration, self.min_gap
        )
        self.max_lag = float(max_lag)
        self._live: LiveScheduler | None = None
        self._live_lock = threading.Lock()

    # --- read-only properties -------------------------------------------------------------
    @property
    def metadata(self) -> ModelMetadata:
        """The model's validated metadata."""
        return self.session.metadata

    @property
    def labels(self) -> list[str]:
        """Class labels, in output order."""
        return list(self.session.metadata.labels)

    @property
    def provider(self) -> str:
        """The ONNX Runtime execution provider actually running the model."""
        return self.session.provider

    @property
    def sample_rate(self) -> int:
        """The model's sample rate (the stream clock)."""
        return self.session.metadata.sample_rate

    @property
    def hop(self) -> float:
        """Effective hop in seconds."""
        return self.timeline.hop_seconds

    @property
    def lookahead(self) -> float:
        """Effective lookahead in seconds."""
        return self.timeline.lookahead_seconds

    @property
    def frame_seconds(self) -> float:
        """Resolution of the score track and of event times."""
        return self.timeline.frame_seconds

    @property
    def latency_bound(self) -> float:
        """Most audio (seconds) between an onset and its report, compute time not included."""
        return self.hop + self.lookahead + self.post.onset_delay(self.frame_seconds)

    # --- streams --------------------------------------------------------------------------
    def stream(
        self,
        sample_rate: float = 48000,
        channels: int = 1,
        name: str = "mic",
        on_event: UpdateCallback | None = None,
        *,
        record_scores: bool = False,
        source: str | None = None,
    ) -> Stream:
        """A new stream of ``channels`` channels at ``sample_rate`` Hz (resampled to the model rate)."""
        return Stream(self, sample_rate, channels, name, on_event, record_scores=record_scores, source=source)

    def push_many(
        self, items: Mapping[Stream, np.ndarray] | Iterable[tuple[Stream, np.ndarray]]
    ) -> dict[Stream, list[Update]]:
        """Push samples to several streams; windows due together are batched into shared inference calls."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        streams = list(dict.fromkeys(s for s, _ in pairs))
        locks = sorted(streams, key=id)
        for s in locks:
            s._lock.acquire()
        try:
            for s, samples in pairs:
                s._check_open()
                s._feed(samples)
            results = run_due(self._run, streams, self.session.batch_limit)
            for s in streams:
                s._emit(results[s])
        finally:
            for s in reversed(locks):
                s._lock.release()
        return results

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.session.run(windows)

    # --- files ----------------------------------------------------------------------------
    def open_file(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        progress: ProgressCallback | None = None,
        record_scores: bool = False,
        on_event: UpdateCallback | None = None,
    ) -> FileRun:
        """A lazily running file: iterate it for updates as the file is read block by block."""
        return FileRun(self, path, name=name, progress=progress, record_scores=record_scores, on_event=on_event)

    def detect_file(
        self, path: str | os.PathLike[str], *, name: str | None = None, progress: ProgressCallback | None = None
    ) -> list[Event]:
        """All events of an audio file, in order of their end. Raises AudioFileError for a bad file."""
        run = self.open_file(path, name=name, progress=progress)
        run.run()
        return run.events

    def score_track(self, path: str | os.PathLike[str], *, progress: ProgressCallback | None = None) -> ScoreTrack:
        """The stitched score track of a file (the frames the events were derived from)."""
        run = self.open_file(path, progress=progress, record_scores=True)
        run.run()
        return run.stream.score_track()

    # --- live -----------------------------------------------------------------------------
    def listen(
        self,
        device: int | str | None = None,
        *,
        sample_rate: float | None = None,
        channels: int = 1,
        name: str = "live",
        blocksize: int = 0,
        on_event: UpdateCallback | None = None,
        ring_seconds: float = 30.0,
        record_scores: bool = False,
    ) -> Any:
        """Open a sounddevice input and detect on it; use as ``with det.listen(0) as live: for u in live: ...``."""
        from .live import LiveStream

        return LiveStream(
            self,
            device=device,
            sample_rate=sample_rate,
            channels=channels,
            name=name,
            blocksize=blocksize,
            on_event=on_event,
            ring_seconds=ring_seconds,
            record_scores=record_scores,
        )

    def _live_scheduler(self) -> LiveScheduler:
        with self._live_lock:
            if self._live is None:
                self._live = LiveScheduler(self._run, self.session.batch_limit, self.hop, self.max_lag)
            return self._live

    def close(self) -> None:
        """Stop the live scheduler thread (if any). Streams stay usable for push."""
        if self._live is not None:
            self._live.stop()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stream:
    """One audio source on a detector. Create with :meth:`Detector.stream`.

    Counters: ``input_samples`` (at the input rate), ``lost_samples`` (input that never arrived,
    zero-filled, input rate), ``nonfinite_samples``, ``skipped_samples`` (model rate, dropped by the
    live lag rule), ``windows`` (evaluated). ``latest_scores`` is the newest final frame of the score
    track (for meters), ``latest_clipwise`` the newest window's clip-level scores.
    """

    def __init__(
        self,
        detector: Detector,
        sample_rate: float,
        channels: int,
        name: str,
        on_event: UpdateCallback | None = None,
        *,
        record_scores: bool = False,
        source: str | None = None,
    ) -> None:
        if int(channels) != channels or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels}")
        self.detector = detector
        self.name = name
        self.source = source or name
        self.sample_rate = float(sample_rate)
        self.channels = int(channels)
        self.on_event = on_event
        self._t = detector.timeline
        self._resampler = StreamResampler(self.sample_rate, self._t.sample_rate)
        labels = detector.labels
        self._stitcher = Stitcher(self._t, len(labels))
        self._tracker = EventTracker(labels, detector.post, self._t.frame_seconds, name)
        self._lock = threading.RLock()
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
        self.latest_scores = np.zeros(len(labels), np.float32)
        self.latest_clipwise = np.zeros(len(labels), np.float32)
        self._record: list[np.ndarray] | None = [] if record_scores else None
        self._warned_nonfinite = False
        self._frame_limit: int | None = None

    # --- public ---------------------------------------------------------------------------
    def push(self, samples: np.ndarray) -> list[Update]:
        """Add ``samples`` ([frames] mono or [frames, channels]); return the updates this produced."""
        with self._lock:
            self._check_open()
            self._feed(samples)
            updates = run_due(self.detector._run, [self], self.detector.session.batch_limit)[self]
            self._emit(updates)
            return updates

    def push_lost(self, frames: int) -> list[Update]:
        """Record ``frames`` input frames that were lost (dropped blocks): they count as silence on the
        timeline, so later samples keep their true timestamps, and are added to ``lost_samples``."""
        with self._lock:
            self._check_open()
            self._feed_lost(int(frames))
            updates = run_due(self.detector._run, [self], self.detector.session.batch_limit)[self]
            self._emit(updates)
            return updates

    def close(self) -> list[Update]:
        """End the stream: evaluate the tail, close open events at the end time, return the last updates."""
        with self._lock:
            if self.closed:
                return []
            self._append(self._resampler.flush())
            self._frame_limit = -(-self._received // self._t.frame)  # frames past the end are not reported
            updates = run_due(self.detector._run, [self], self.detector.session.batch_limit, final=[self])[self]
            first, frames = self._stitcher.flush(self._received)
            updates += self._frames(first, frames)
            updates += self._tracker.close(self._received / self._t.sample_rate)
            self.closed = True
            self._hist = np.zeros(0, np.float32)
            self._emit(updates)
            return updates

    @property
    def events(self) -> list[Event]:
        """Events that have ended so far (in order of their end)."""
        return list(self._tracker.closed_events)

    @property
    def open_events(self) -> list[Event]:
        """Events whose onset was reported and that have not ended."""
        with self._lock:
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
        return dict(zip(self.detector.labels, self.latest_scores.tolist(), strict=True))

    def score_track(self) -> ScoreTrack:
        """The stitched score track so far; needs ``record_scores=True``."""
        if self._record is None:
            raise RuntimeError("create the stream with record_scores=True to keep its score track")
        with self._lock:
            empty = np.zeros((0, len(self.detector.labels)), np.float32)
            scores = np.concatenate(self._record) if self._record else empty
        return ScoreTrack(tuple(self.detector.labels), self._t.frame_seconds, scores, self.name)

    def stats(self) -> dict[str, Any]:
        """Counters and figures for a status line."""
        return {
            "stream": self.name,
            "position_s": self.position,
            "processed_s": self.processed,
            "lag_s": self._backlog_seconds(),
            "input_samples": self.input_samples,
            "lost_samples": self.lost_samples,
            "lost_s": self.lost_seconds,
            "nonfinite_samples": self.nonfinite_samples,
            "skipped_s": self.skipped_samples / self._t.sample_rate,
            "windows": self.windows,
            "inference_s": self.inference_seconds,
        }

    # --- internals (called with the lock held) -------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"stream {self.name!r} is closed")

    def _emit(self, updates: list[Update]) -> None:
        if self.on_event is not None:
            for u in updates:
                self.on_event(u)

    def _feed(self, samples: np.ndarray) -> None:
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

    def _feed_lost(self, frames: int) -> None:
        if frames <= 0:
            return
        self.lost_samples += frames
        self.input_samples += frames
        chunk = max(1, int(self.sample_rate))
        for start in range(0, frames, chunk):
            self._append(self._resampler.process(np.zeros(min(chunk, frames - start), np.float32)))

    def _append(self, y: np.ndarray) -> None:
        if y.size:
            self._hist = np.concatenate([self._hist, y]) if self._hist.size else np.array(y, np.float32)
            self._received += y.size

    def _take_due(self, limit: int, final: bool = False) -> tuple[list[int], np.ndarray]:
        """Claim up to ``limit`` due windows; return their indices and samples [n, W]."""
        t = self._t
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

    def _trim(self) -> None:
        keep_from = max(0, self._next_k * self._t.hop - self._t.window)
        drop = keep_from - self._hist_start
        if drop > 0:
            self._hist = self._hist[drop:].copy() if drop < self._hist.size else np.zeros(0, np.float32)
            self._hist_start = keep_from

    def _consume(self, ks: list[int], framewise: np.ndarray, clipwise: np.ndarray, seconds: float) -> list[Update]:
        updates: list[Update] = []
        self.windows += len(ks)
        self.inference_seconds += seconds
        for i, k in enumerate(ks):
            first, frames = self._stitcher.add(k, framewise[i])
            updates += self._frames(first, frames)
        self.latest_clipwise = clipwise[-1].copy()
        return updates

    def _frames(self, first: int, frames: np.ndarray) -> list[Update]:
        if self._frame_limit is not None:
            frames = frames[: max(0, self._frame_limit - first)]
        if frames.shape[0] == 0:
            return []
        self.latest_scores = frames[-1].copy()
        if self._record is not None:
            self._record.append(frames)
        return self._tracker.push(frames)

    def _backlog_seconds(self) -> float:
        return max(0, self._received - (self._next_k - 1) * self._t.hop) / self._t.sample_rate

    def _skip_to_newest(self) -> None:
        """Lag rule: jump to the newest complete window; the skipped audio is never evaluated."""
        newest = self._t.windows_due(self._received)
        if newest > self._next_k:
            self.skipped_samples += (newest - self._next_k) * self._t.hop
            self._next_k = newest
            self._trim()


def _int_to_float(x: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return (x.astype(np.float32) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    raise ValueError(f"unsupported sample type {x.dtype}")


class FileRun:
    """A file processed as a stream; iterate for updates, or call :meth:`run`. Reads block by block."""

    def __init__(
        self,
        detector: Detector,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        progress: ProgressCallback | None = None,
        record_scores: bool = False,
        on_event: UpdateCallback | None = None,
    ) -> None:
        self.path = str(path)
        self.info = audio_info(path)  # raises AudioFileError naming the file
        if self.info.frames == 0:
            raise AudioFileError(path, "contains no audio samples")
        self.progress = progress
        self.stream = detector.stream(
            self.info.sample_rate,
            self.info.channels,
            name=name or Path(path).name,
            on_event=on_event,
            record_scores=record_scores,
            source=self.path,
        )
        hop_frames = detector.hop * self.info.sample_rate
        self.block_frames = max(DEFAULT_BLOCK_FRAMES, int(hop_frames * detector.session.batch_limit))
        self._iter: Iterator[Update] | None = None

    @property
    def duration(self) -> float:
        """Length of the file in seconds (from its header)."""
        return self.info.duration

    @property
    def events(self) -> list[Event]:
        """Events that have ended so far."""
        return self.stream.events

    def __iter__(self) -> Iterator[Update]:
        if self._iter is None:
            self._iter = self._generate()
        return self._iter

    def _generate(self) -> Iterator[Update]:
        done = 0
        for block in read_blocks(self.path, self.block_frames):
            yield from self.stream.push(block)
            done += block.shape[0]
            if self.progress is not None:
                self.progress(done / self.info.sample_rate, self.info.duration)
        yield from self.stream.close()

    def run(self) -> list[Event]:
        """Process the whole file; return its events."""
        for _ in self:
            pass
        return self.events
