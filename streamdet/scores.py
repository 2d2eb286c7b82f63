"""The score track: per-class scores on a regular frame grid, the one type every part of streamdet uses.

The engine records it (:meth:`streamdet.Detector.score_track`), training validation builds it offline
(:func:`streamdet.train.loop.offline_tracks`), the threshold tuner turns it into events with the engine's
tracker (:mod:`streamdet.train.thresholds`) and PSDS thresholds it (:func:`streamdet.metrics.psds_from_scores`).

Frame ``j`` covers ``[timestamps[j], timestamps[j + 1])``: ``j * frame_seconds`` to the next frame, the last
one cut at ``duration`` (the end of the audio) when that is known. Tracks read from elsewhere with their own
frame boundaries keep them exactly (:meth:`ScoreTrack.from_timestamps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ScoreTrack"]


@dataclass(frozen=True, eq=False)
class ScoreTrack:
    """Scores ``[frames, classes]`` of one stream or file; ``scores[j, c]`` is class ``labels[c]`` in frame ``j``."""

    labels: tuple[str, ...]
    frame_seconds: float
    scores: np.ndarray
    stream: str = "stream"
    duration: float | None = None
    edges: np.ndarray | None = None  # explicit frame boundaries [frames + 1] (from_timestamps), else None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        scores = np.asarray(self.scores)
        if scores.ndim != 2 or scores.shape[1] != len(self.labels):
            raise ValueError(f"scores must be [frames, {len(self.labels)}], got {scores.shape}")
        object.__setattr__(self, "scores", scores)
        if self.edges is not None:
            edges = np.asarray(self.edges, dtype=float)
            if edges.shape != (scores.shape[0] + 1,):
                raise ValueError("timestamps must have one more entry than scores has frames")
            object.__setattr__(self, "edges", edges)

    @classmethod
    def from_timestamps(cls, timestamps: Sequence[float] | np.ndarray, scores: Sequence | np.ndarray,
                        labels: Sequence[str], stream: str = "stream") -> ScoreTrack:
        """A track whose frame ``j`` covers ``[timestamps[j], timestamps[j + 1])`` exactly (sed_scores_eval's
        layout); ``frame_seconds`` is the mean frame length."""
        edges = np.asarray(timestamps, dtype=float)
        values = np.asarray(scores, dtype=float)
        frames = max(1, values.shape[0]) if values.ndim == 2 else 1
        span = float(edges[-1] - edges[0]) if edges.size > 1 else 0.0
        return cls(tuple(labels), span / frames, values, stream, float(edges[-1]) if edges.size else None, edges)

    @property
    def frames(self) -> int:
        """Number of frames."""
        return int(self.scores.shape[0])

    @property
    def end(self) -> float:
        """End of the track in seconds: ``duration`` when known, else the end of the last frame."""
        if self.edges is not None:
            return float(self.edges[-1])
        return float(self.duration) if self.duration is not None else self.frames * self.frame_seconds

    @property
    def timestamps(self) -> np.ndarray:
        """Frame boundaries in seconds, ``[frames + 1]`` (the last one is :attr:`end`)."""
        if self.edges is not None:
            return self.edges
        stamps = np.arange(self.frames + 1) * self.frame_seconds
        if self.duration is not None and self.frames:
            stamps[-1] = min(stamps[-1], float(self.duration))
        return stamps

    @property
    def times(self) -> np.ndarray:
        """Start time in seconds of each frame."""
        return self.timestamps[:-1]

    def column(self, c: int) -> ScoreTrack:
        """The track of class ``c`` alone (for per-class work)."""
        return ScoreTrack((self.labels[c],), self.frame_seconds, self.scores[:, c : c + 1], self.stream,
                          self.duration, self.edges)

    def __getitem__(self, label: str) -> np.ndarray:
        return self.scores[:, self.labels.index(label)]
