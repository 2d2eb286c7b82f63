"""Per-class hysteresis thresholds tuned on a validation split, with the engine's own event tracker.

Score tracks (``{file: (scores [frames, C], frame_seconds, duration)}``) come from the runtime engine
(:meth:`streamdet.Detector.score_track`) or from :func:`streamdet.train.loop.offline_tracks`; events are made by
:class:`streamdet.tracker.EventTracker` exactly as a stream makes them, so tuned thresholds mean the same thing
in the engine. Classes are independent in the tracker, so each class is tuned on its own: every ``(on, off)``
pair of a grid is scored with the event-based F1 (200 ms collar) plus ``segment_weight`` times the segment-based
F1 (1 s) of that class, and the best pair wins (ties: the pair closest to the middle of the grid).
:func:`tune_postprocessing` also picks each class's ``min_duration`` and ``min_gap`` (stored in the model's
``postprocess`` metadata, which the engine applies by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamdet.events import Event
from streamdet.postprocess import PostProcessing
from streamdet.tracker import EventTracker

__all__ = [
    "DEFAULT_DURATION_GRID",
    "DEFAULT_GAP_GRID",
    "DEFAULT_OFF_RATIOS",
    "DEFAULT_ON_GRID",
    "track_events",
    "tracks_to_events",
    "tune_postprocessing",
    "tune_thresholds",
]

Track = tuple[np.ndarray, float, float]  # scores [frames, C], frame seconds, duration seconds

DEFAULT_ON_GRID: tuple[float, ...] = tuple(round(x, 2) for x in np.arange(0.15, 0.91, 0.05))
DEFAULT_OFF_RATIOS: tuple[float, ...] = (0.4, 0.55, 0.7, 0.85, 1.0)


def track_events(
    scores: np.ndarray,
    frame_seconds: float,
    duration: float,
    labels: Sequence[str],
    thresholds: Mapping[str, tuple[float, float]],
    name: str,
    median_filter: float = 0.0,
    min_duration: float | Mapping[str, float] = 0.0,
    min_gap: float | Mapping[str, float] = 0.0,
) -> list[Event]:
    """Events of one score track, as the engine's tracker makes them (closed at ``duration``)."""
    post = PostProcessing.create(thresholds, labels, frame_seconds, median_filter, min_duration, min_gap)
    tracker = EventTracker(labels, post, frame_seconds, name)
    tracker.push(np.asarray(scores, np.float32))
    tracker.close(duration)
    return list(tracker.closed_events)


def tracks_to_events(
    tracks: Mapping[str, Track], labels: Sequence[str], thresholds: Mapping[str, tuple[float, float]], **post: Any
) -> dict[str, list[Event]]:
    """``{file: events}`` for every track."""
    return {
        name: track_events(scores, fs, dur, labels, thresholds, name, **post)
        for name, (scores, fs, dur) in tracks.items()
    }


DEFAULT_GAP_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
# min_duration delays every onset report by its value, so its grid stops at 0.5 s (a bounded latency cost);
# min_gap only delays offsets.
DEFAULT_DURATION_GRID: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5)


def _class_scorer(
    tracks: Mapping[str, Track], ground_truth: Mapping[str, list[Event]], c: int, label: str, segment_weight: float,
    median_filter: float,
) -> Any:
    """``score(on, off, min_duration, min_gap) -> (objective, event F1, segment F1)`` of class ``c``."""
    from streamdet.metrics import event_based, segment_based

    durations = {name: float(t[2]) for name, t in tracks.items()}
    sub = {name: (scores[:, c : c + 1], fs, dur) for name, (scores, fs, dur) in tracks.items()}
    gt = {name: [e for e in ground_truth.get(name, []) if e.label == label] for name in tracks}

    def score(on: float, off: float, min_duration: float = 0.0, min_gap: float = 0.0) -> tuple[float, float, float]:
        pred = tracks_to_events(sub, [label], {label: (on, off)}, median_filter=median_filter,
                                min_duration=min_duration, min_gap=min_gap)
        ev = event_based(pred, gt, labels=[label], durations=durations).classes[label]["f1"]
        seg = segment_based(pred, gt, labels=[label], durations=durations).classes[label]["f1"]
        ev, seg = (0.0 if np.isnan(v) else float(v) for v in (ev, seg))
        return ev + segment_weight * seg, ev, seg

    return score


def _best_pair(score: Any, on_grid: Sequence[float], off_ratios: Sequence[float], **post: float) -> tuple:
    """``(on, off, objective, event F1, segment F1)`` of the best grid pair (ties: nearest the grid's middle)."""
    mid = float(np.median(on_grid))
    best: tuple | None = None
    for on in on_grid:
        for ratio in off_ratios:
            off = round(on * ratio, 3)
            obj, ev, seg = score(on, off, **post)
            key = (round(obj, 6), -abs(on - mid), -abs(ratio - 0.7))
            if best is None or key > best[0]:
                best = (key, on, off, obj, ev, seg)
    assert best is not None
    return best[1:]


def _class_report(on: float, off: float, scored: tuple, default: tuple, **post: float) -> dict[str, float]:
    """One class's tuning report: the chosen pair (and ``post`` settings) with its event/segment F1 (``scored``) and
    those of the default 0.5/0.3 (``default``), both ``(objective, event F1, segment F1)``."""
    return {
        "on": float(on),
        "off": float(off),
        **{k: float(v) for k, v in post.items()},
        "event_f1": round(scored[1], 4),
        "segment_f1": round(scored[2], 4),
        "default_event_f1": round(default[1], 4),
        "default_segment_f1": round(default[2], 4),
    }


def tune_thresholds(
    tracks: Mapping[str, Track],
    ground_truth: Mapping[str, list[Event]],
    labels: Sequence[str],
    on_grid: Sequence[float] = DEFAULT_ON_GRID,
    off_ratios: Sequence[float] = DEFAULT_OFF_RATIOS,
    segment_weight: float = 0.5,
    **post: float,
) -> tuple[dict[str, tuple[float, float]], dict[str, Any]]:
    """Best ``(on, off)`` per class on ``tracks`` against ``ground_truth``; returns ``(thresholds, report)``.

    ``post`` (``median_filter``, ``min_duration``, ``min_gap``, seconds) is applied while scoring. The report
    holds, per class, the chosen pair, its event/segment F1 and those of the default 0.5/0.3.
    """
    chosen: dict[str, tuple[float, float]] = {}
    report: dict[str, Any] = {"objective": f"event_f1 + {segment_weight} * segment_f1", "classes": {}}
    median = float(post.pop("median_filter", 0.0))
    for c, label in enumerate(labels):
        score = _class_scorer(tracks, ground_truth, c, label, segment_weight, median)
        on, off, *scored = _best_pair(score, on_grid, off_ratios, **post)
        chosen[label] = (float(on), float(off))
        report["classes"][label] = _class_report(on, off, tuple(scored), score(0.5, 0.3, **post))
    return chosen, report


def tune_postprocessing(
    tracks: Mapping[str, Track],
    ground_truth: Mapping[str, list[Event]],
    labels: Sequence[str],
    on_grid: Sequence[float] = DEFAULT_ON_GRID,
    off_ratios: Sequence[float] = DEFAULT_OFF_RATIOS,
    gap_grid: Sequence[float] = DEFAULT_GAP_GRID,
    duration_grid: Sequence[float] = DEFAULT_DURATION_GRID,
    segment_weight: float = 0.5,
    median_filter: float = 0.0,
) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, float]], dict[str, Any]]:
    """Per class, the thresholds and the ``min_duration`` / ``min_gap`` that maximise the objective on
    ``tracks``; returns ``(thresholds, postprocess {label: {"min_duration", "min_gap"}}, report)``.

    Coordinate search, per class: the best ``(on, off)`` with no merging, then the best ``(min_duration,
    min_gap)`` pair of the grids at those thresholds, then the thresholds again at that pair. Every candidate is
    scored with the engine's tracker, so the values mean the same thing in :class:`streamdet.Detector`.
    """
    thresholds: dict[str, tuple[float, float]] = {}
    postprocess: dict[str, dict[str, float]] = {}
    report: dict[str, Any] = {"objective": f"event_f1 + {segment_weight} * segment_f1",
                              "search": "thresholds, then (min_duration, min_gap), then thresholds", "classes": {}}
    for c, label in enumerate(labels):
        score = _class_scorer(tracks, ground_truth, c, label, segment_weight, median_filter)
        on, off, *_ = _best_pair(score, on_grid, off_ratios)
        best: tuple | None = None
        for dur in duration_grid:
            for gap in gap_grid:
                obj = score(on, off, dur, gap)[0]
                key = (round(obj, 6), -gap, -dur)  # ties: the least post-processing
                if best is None or key > best[0]:
                    best = (key, dur, gap)
        assert best is not None
        _, dur, gap = best
        on, off, *scored = _best_pair(score, on_grid, off_ratios, min_duration=dur, min_gap=gap)
        thresholds[label] = (float(on), float(off))
        postprocess[label] = {"min_duration": float(dur), "min_gap": float(gap)}
        report["classes"][label] = _class_report(on, off, tuple(scored), score(0.5, 0.3), **postprocess[label])
    return thresholds, postprocess, report
