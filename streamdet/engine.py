"""The engine context: what every stream of a detector shares, and the one way to run what is due.

An :class:`Engine` holds the timeline (window, hop, frame geometry), the labels, the resolved
post-processing (:class:`~streamdet.postprocess.PostProcessing` and its frame rules), the runner (windows →
``(framewise, clipwise)``, the ONNX Runtime session's ``run``), the batch limit and the label map, if any
(:class:`~streamdet.label_map.ScoreMap`: the streams stitch the model's classes and map the stitched frames to
the map's labels, max over members, before post-processing; ``labels`` are then the map's). A
:class:`~streamdet.stream.Stream` is built from it (not from the Detector), so the engine can be driven
without a model file (tests, custom runners) and nothing below the Detector imports it.

:meth:`Engine.run` is the one helper for "lock the streams, prepare them, evaluate what is due, release":
``Stream.push`` / ``push_lost`` / ``close``, ``Detector.push_many`` and the live scheduler's cycle all go
through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from .events import Update
from .label_map import ScoreMap
from .postprocess import FrameRules, PostProcessing
from .scheduler import Runner, Schedulable, run_locked
from .stitching import Timeline

__all__ = ["Engine"]

S = TypeVar("S", bound=Schedulable)


@dataclass(frozen=True)
class Engine:
    """Timeline, labels, post-processing, runner, batch limit and label map shared by a detector's streams.

    ``labels`` are the labels of the events (the label map's when there is one); the runner's outputs have the
    model's classes (``model_classes``)."""

    timeline: Timeline
    labels: tuple[str, ...]
    post: PostProcessing
    runner: Runner
    batch_limit: int
    score_map: ScoreMap | None = None
    rules: FrameRules = field(init=False, repr=False)  # the post-processing in frames of this timeline

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if tuple(self.post.labels) != self.labels:
            raise ValueError("the post-processing settings are for other labels")
        if self.score_map is not None and tuple(self.score_map.labels) != self.labels:
            raise ValueError("the label map is for other labels")
        if self.batch_limit < 1:
            raise ValueError(f"batch_limit must be at least 1, got {self.batch_limit}")
        object.__setattr__(self, "rules", self.post.frames(self.timeline.frame_seconds))

    @property
    def model_classes(self) -> int:
        """Classes of the model's outputs (what the streams stitch)."""
        return len(self.score_map.model_labels) if self.score_map is not None else len(self.labels)

    def map_scores(self, scores: np.ndarray) -> np.ndarray:
        """Model scores ``[..., model_classes]`` as scores of ``labels`` (the label map applied; else as they are)."""
        return scores if self.score_map is None else self.score_map.apply(scores)

    def run(self, streams: Sequence[S], prepare: Callable[[S], object] | None = None,
            final: Sequence[S] = ()) -> dict[S, list[Update]]:
        """Lock ``streams`` (in a fixed order), call ``prepare`` on each, evaluate every due window (batched
        across the streams; ``final`` ones up to their end), release the locks; return each stream's updates."""
        return run_locked(self.runner, self.batch_limit, streams, prepare, final)
