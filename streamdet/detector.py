"""The public engine API of docs/DESIGN.md §5: :class:`Detector` (and :class:`FileRun`, file mode).

A :class:`Detector` owns one ONNX Runtime session (shared by all its streams) and the settings: hop,
lookahead, the label map (``label_map`` / ``classes``, :mod:`streamdet.label_map`) and the post-processing (one
:class:`~streamdet.postprocess.PostProcessing` over the labels of the events, resolved once). It
builds the :class:`~streamdet.engine.Engine` its streams are made from; a
:class:`~streamdet.stream.Stream` (its own module) is one audio source.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio_io import DEFAULT_BLOCK_FRAMES, AudioFileError, audio_info, read_blocks
from .engine import Engine
from .events import Event, Update
from .label_map import LabelMap, ScoreMap, resolve_label_map
from .model_metadata import ModelMetadata
from .postprocess import PostProcessing, SecondsSpec, ThresholdSpec
from .scheduler import LiveScheduler
from .scores import ScoreTrack
from .session import ModelSession
from .stitching import Timeline
from .stream import Stream, UpdateCallback, push_pieces

if TYPE_CHECKING:
    from .live import LiveStream

__all__ = ["AudioFileError", "Detector", "FileRun", "ScoreTrack", "Stream"]

ProgressCallback = Callable[[float, float], Any]


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
        post: a resolved :class:`~streamdet.postprocess.PostProcessing` for the labels of the events (the model's,
            or the label map's), instead of ``thresholds`` / ``median_filter`` / ``min_duration`` / ``min_gap``.
        label_map: group the model's classes into new labels, the score of a group being the maximum of its
            members' (before post-processing): a :class:`~streamdet.label_map.LabelMap`, a mapping
            ``{new_label: [model labels] or {"labels": [...], "threshold", "min_duration", "min_gap"}}``, the
            name of a built-in map (``"household"``, ``"safety"``) or a JSON / YAML file; see
            :mod:`streamdet.label_map` (the groups' default thresholds come from their members).
        classes: keep only these labels (of the map, or of the model without one): a list, or one
            comma-separated string. ``thresholds``, ``min_duration``, ``min_gap`` and ``post`` then name the
            new labels, and so do the events, the score track and ``labels``.
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
        post: PostProcessing | None = None,
        label_map: str | os.PathLike[str] | Mapping[str, Any] | LabelMap | None = None,
        classes: str | Iterable[str] | None = None,
    ) -> None:
        self.session = ModelSession(model, device=device, threads=threads, max_batch=max_batch, io_binding=io_binding)
        meta = self.session.metadata
        self.timeline = Timeline.create(meta, hop, lookahead)
        chosen = classes if classes is None or isinstance(classes, str) else list(classes)
        self.score_map: ScoreMap | None = resolve_label_map(meta.labels, meta.thresholds, meta.postprocess,
                                                            label_map, chosen)
        labels = meta.labels if self.score_map is None else self.score_map.labels
        model_thresholds = meta.thresholds if self.score_map is None else self.score_map.thresholds
        model_post = meta.postprocess if self.score_map is None else self.score_map.postprocess
        if post is not None and (thresholds, min_duration, min_gap, median_filter) != (None, None, None, 0.0):
            raise ValueError("give the post-processing either as post= or as thresholds / median_filter / "
                             "min_duration / min_gap, not both")
        if post is None:
            post = PostProcessing.resolve(labels, model_thresholds=model_thresholds, model_postprocess=model_post,
                                          thresholds=thresholds, median_filter=median_filter,
                                          min_duration=min_duration, min_gap=min_gap)
        self.post = post
        self.engine = Engine(self.timeline, labels, post, self.session.run, self.session.batch_limit,
                             self.score_map)
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
        """The labels of the events, in output order: the label map's when there is one, else the model's."""
        return list(self.engine.labels)

    @property
    def model_labels(self) -> list[str]:
        """The model's own class labels (what a label map groups)."""
        return list(self.session.metadata.labels)

    @property
    def label_map(self) -> LabelMap | None:
        """The label map in effect (``classes`` applied), or None."""
        return None if self.score_map is None else self.score_map.label_map

    @property
    def groups(self) -> dict[str, list[str]]:
        """Each label of the events with the model labels it is the maximum of (``{label: [label]}`` without a
        map)."""
        if self.score_map is None:
            return {label: [label] for label in self.labels}
        return {group.label: list(group.members) for group in self.score_map.label_map.groups}

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
    def thresholds(self) -> dict[str, tuple[float, float]]:
        """Per-class ``(on, off)`` thresholds in effect (``post.thresholds``)."""
        return dict(self.post.thresholds)

    @property
    def min_duration(self) -> dict[str, float]:
        """Per-class minimum event duration in seconds (``post.min_duration``)."""
        return dict(self.post.min_duration)

    @property
    def min_gap(self) -> dict[str, float]:
        """Per-class minimum gap in seconds (``post.min_gap``)."""
        return dict(self.post.min_gap)

    @property
    def latency_bound(self) -> float:
        """Most audio (seconds) between an onset and its report, compute time not included."""
        return self.hop + self.lookahead + self.engine.rules.onset_delay(self.frame_seconds)

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
        return Stream(self.engine, sample_rate, channels, name, on_event, record_scores=record_scores, source=source)

    def push_many(
        self, items: Mapping[Stream, np.ndarray] | Iterable[tuple[Stream, np.ndarray]]
    ) -> dict[Stream, list[Update]]:
        """Push samples to several streams; windows due together are batched into shared inference calls
        (long pushes go in pieces, :func:`~streamdet.stream.push_pieces`)."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        streams = list(dict.fromkeys(s for s, _ in pairs))
        for s in streams:
            if s.engine is not self.engine:
                raise ValueError(f"stream {s.name!r} belongs to another detector")
        results = push_pieces([(s, [samples for t, samples in pairs if t is s]) for s in streams])
        for s in streams:
            s.emit(results[s])
        return results

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
        latency: str | float | None = None,
        record_scores: bool = False,
        open_device: bool = True,
    ) -> LiveStream:
        """Open a sounddevice input and detect on it; use as ``with det.listen(0) as live: for u in live: ...``.

        ``device`` is the sounddevice input (index or part of a name; None: the system's default). With
        ``open_device=False`` no device is opened: feed captured blocks to ``live.capture`` yourself (custom
        capture code, tests); ``sample_rate`` is then required. ``blocksize`` / ``latency``: PortAudio's block size
        in frames (0: PortAudio's choice) and input latency (None: "high", see :mod:`streamdet.live`)."""
        from .live import DEVICE_LATENCY, LiveStream, default_input_rate

        if sample_rate is None:
            if not open_device:
                raise ValueError("sample_rate is required with open_device=False")
            sample_rate = default_input_rate(device)
        stream = self.stream(sample_rate, channels, name=name, record_scores=record_scores)
        return LiveStream(stream, self.live_scheduler(), device=device, blocksize=blocksize, on_event=on_event,
                          ring_seconds=ring_seconds, latency=DEVICE_LATENCY if latency is None else latency,
                          open_device=open_device)

    def live_scheduler(self) -> LiveScheduler:
        """The thread serving this detector's live streams (created on first use, started by the first
        stream unless its ``autostart`` was turned off)."""
        with self._live_lock:
            if self._live is None:
                self._live = LiveScheduler(self.engine.runner, self.engine.batch_limit, self.hop, self.max_lag)
            return self._live

    def close(self) -> None:
        """Stop the live scheduler thread (if any). Streams stay usable for push."""
        if self._live is not None:
            self._live.stop()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
