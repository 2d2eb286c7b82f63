"""Per-class hysteresis thresholds tuned on a validation split, with the engine's own event tracker.

Score tracks (``{file: ScoreTrack}``, :class:`streamdet.scores.ScoreTrack`) come from the runtime engine
(:meth:`streamdet.Detector.score_track`) or from :func:`streamdet.train.loop.offline_tracks`; the older tuple form
``(scores [frames, C], frame_seconds, duration)`` is still read. Events are made by
:class:`streamdet.tracker.EventTracker` with a :class:`streamdet.postprocess.PostProcessing`, exactly as a stream
makes them, so tuned values mean the same thing in the engine. Classes are independent in the tracker, so each
class is tuned on its own: every ``(on, off)`` pair of a grid is scored with the event-based F1 (200 ms collar)
plus ``segment_weight`` times the segment-based F1 (1 s) of that class, and the best pair wins (ties: the pair
closest to the middle of the grid).
:func:`tune_postprocessing` also picks each class's ``min_duration`` and ``min_gap`` (stored in the model's
``postprocess`` metadata, which the engine applies by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamdet.events import Event
from streamdet.postprocess import PostProcessing
from streamdet.scores import ScoreTrack
from streamdet.tracker import EventTracker

__all__ = [
    "DEFAULT_DURATION_GRID",
    "DEFAULT_GAP_GRID",
    "DEFAULT_OFF_RATIOS",
    "DEFAULT_ON_GRID",
    "as_track",
    "track_events",
    "tracks_to_events",
    "tune_postprocessing",
    "tune_thresholds",
]

TrackLike = ScoreTrack | tuple[np.ndarray, float, float]  # a ScoreTrack, or (scores [frames, C], frame s, duration s)

DEFAULT_ON_GRID: tuple[float, ...] = tuple(round(x, 2) for x in np.arange(0.15, 0.91, 0.05))
DEFAULT_OFF_RATIOS: tuple[float, ...] = (0.4, 0.55, 0.7, 0.85, 1.0)


def as_track(value: TrackLike, labels: Sequence[str], name: str = "stream") -> ScoreTrack:
    """``value`` as a :class:`ScoreTrack` of ``labels``: a ScoreTrack as it is, or the tuple form ``(scores, frame
    seconds, duration seconds)``."""
    if isinstance(value, ScoreTrack):
        return value
    scores, frame_seconds, duration = value
    return ScoreTrack(tuple(labels), float(frame_seconds), np.asarray(scores, np.float32), name, float(duration))


def track_events(track: ScoreTrack, post: PostProcessing, name: str | None = None) -> list[Event]:
    """Events of one score track with the settings ``post`` (for the track's labels), as the engine's tracker
    makes them; open events are closed at the track's end."""
    if tuple(post.labels) != tuple(track.labels):
        post = post.subset(track.labels)
    rules = post.frames(track.frame_seconds)
    tracker = EventTracker(track.labels, rules, track.frame_seconds, name or track.stream)
    tracker.push(np.asarray(track.scores, np.float32))
    tracker.close(track.end)
    return list(tracker.closed_events)


def tracks_to_events(
    tracks: Mapping[str, TrackLike], post: PostProcessing | Sequence[str],
    thresholds: Mapping[str, tuple[float, float]] | None = None, **settings: Any,
) -> dict[str, list[Event]]:
    """``{file: events}`` for every track, with the post-processing ``post``.

    The older call form ``tracks_to_events(tracks, labels, thresholds, min_duration=..., min_gap=...,
    median_filter=...)`` is read too (the settings are resolved with :meth:`PostProcessing.resolve`).
    """
    if not isinstance(post, PostProcessing):
        post = PostProcessing.resolve(list(post), thresholds=thresholds, **settings)
    elif thresholds is not None or settings:
        raise TypeError("pass either a PostProcessing or labels with settings, not both")
    return {name: track_events(as_track(value, post.labels, name), post, name) for name, value in tracks.items()}


DEFAULT_GAP_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
# min_duration delays every onset report by its value, so its grid stops at 0.5 s (a bounded latency cost);
# min_gap only delays offsets.
DEFAULT_DURATION_GRID: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5)


def _class_scorer(
    tracks: Mapping[str, TrackLike], ground_truth: Mapping[str, list[Event]], labels: Sequence[str], c: int,
    segment_weight: float, median_filter: float,
) -> Any:
    """``score(on, off, min_duration, min_gap) -> (objective, event F1, segment F1)`` of class ``labels[c]``."""
    from streamdet.metrics import event_based, segment_based

    label = labels[c]
    full = {name: as_track(t, labels, name) for name, t in tracks.items()}
    durations = {name: t.end for name, t in full.items()}
    sub = {name: t.column(c) for name, t in full.items()}
    gt = {name: [e for e in ground_truth.get(name, []) if e.label == label] for name in tracks}

    def score(on: float, off: float, min_duration: float = 0.0, min_gap: float = 0.0) -> tuple[float, float, float]:
        post = PostProcessing.resolve([label], thresholds=(on, off), median_filter=median_filter,
                                      min_duration=min_duration, min_gap=min_gap)
        pred = tracks_to_events(sub, post)
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
    tracks: Mapping[str, TrackLike],
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
        score = _class_scorer(tracks, ground_truth, labels, c, segment_weight, median)
        on, off, *scored = _best_pair(score, on_grid, off_ratios, **post)
        chosen[label] = (float(on), float(off))
        report["classes"][label] = _class_report(on, off, tuple(scored), score(0.5, 0.3, **post))
    return chosen, report


def tune_postprocessing(
    tracks: Mapping[str, TrackLike],
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
        score = _class_scorer(tracks, ground_truth, labels, c, segment_weight, median_filter)
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
