"""The samples of one location as fast as they can be read (``streamdet file -``: a file on standard input)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..audio_io import AudioFileError
from ..extras import ExtraMissingError
from .reader import ReaderSettings, SourceReader, SourceStatus
from .urls import SourceSpec, default_name

if TYPE_CHECKING:
    from ..detector import Detector, Stream
    from ..events import Event


class _QueueFeed:
    """A :class:`~streamdet.sources.reader.Feed` that queues what the reader delivers."""

    def __init__(self) -> None:
        self.items: queue.SimpleQueue = queue.SimpleQueue()

    def format(self, name: str, sample_rate: int) -> None:
        self.items.put(("format", sample_rate))

    def audio(self, name: str, samples: np.ndarray) -> None:
        self.items.put(("audio", samples))

    def lost(self, name: str, frames: int) -> None:
        self.items.put(("audio", np.zeros(frames, np.float32)))

    def origin(self, name: str, wall: float) -> None:
        pass

    def status(self, status: SourceStatus) -> None:
        pass

    def end(self, name: str) -> None:
        self.items.put(("end", None))


def decode_audio(location: str) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(sample_rate, samples)`` (float32 mono) of ``location`` (``-`` is standard input) in
    order, without pacing. Raises :class:`~streamdet.audio_io.AudioFileError` naming the location when it
    cannot be opened or decoded, or holds no audio; :class:`~streamdet.extras.ExtraMissingError` without PyAV."""
    from .reader import import_av

    import_av()  # fail here, in the caller's thread, when the extra is missing
    feed = _QueueFeed()
    settings = ReaderSettings(reconnect=False, realtime=False)
    reader = SourceReader(SourceSpec(default_name(location), location), feed, settings)
    reader.start()
    rate = 0
    total = 0
    try:
        while True:
            kind, value = feed.items.get()
            if kind == "format":
                rate = value
            elif kind == "audio":
                total += value.size
                yield rate, value
            else:
                break
    finally:
        reader.stop()
    if reader.error is not None:
        raise AudioFileError(location, reader.error)
    if total == 0:
        raise AudioFileError(location, "contains no audio samples")


class DecodedRun:
    """A location (``-``: standard input) decoded with PyAV and detected as fast as it is read, like
    :class:`~streamdet.detector.FileRun` for ``streamdet file -``: call :meth:`run`, then read ``events``,
    ``duration`` and ``stream``."""

    def __init__(self, detector: Detector, location: str, *, name: str | None = None,
                 record_scores: bool = False) -> None:
        self.detector = detector
        self.location = location
        self.name = name or location
        self.record_scores = record_scores
        self.stream: Stream | None = None

    @property
    def events(self) -> list[Event]:
        """Events that have ended so far."""
        return self.stream.events if self.stream is not None else []

    @property
    def duration(self) -> float:
        """Seconds of audio read so far."""
        return self.stream.position if self.stream is not None else 0.0

    def run(self) -> list[Event]:
        """Read and detect everything; raises AudioFileError naming the location (also when PyAV is missing)."""
        try:
            for rate, samples in decode_audio(self.location):
                if self.stream is None:
                    self.stream = self.detector.stream(rate, 1, name=self.name, record_scores=self.record_scores,
                                                       source=self.location)
                self.stream.push(samples)
        except ExtraMissingError as exc:
            raise AudioFileError(self.location, str(exc)) from None
        if self.stream is not None:
            self.stream.close()
        return self.events
