"""Per-class hysteresis thresholds tuned on a validation split, with the engine's own event tracker.

Score tracks (``{file: (scores [frames, C], frame_seconds, duration)}``) come from the runtime engine
(:meth:`streamdet.Detector.score_track`) or from :func:`streamdet.train.loop.offline_tracks`; events are made by
:class:`streamdet.tracker.EventTracker` exactly as a stream makes them, so tuned thresholds mean the same thing
in the engine. Classes are independent in the tracker, so each class is tuned on its own: every ``(on, off)``
pair of a grid is scored with the event-based F1 (200 ms collar) plus ``segment_weight`` times the segment-based
F1 (1 s) of that class, and the best pair wins (ties: the pair closest to the middle of the grid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamdet.events import Event
from streamdet.postprocess import PostProcessing
from streamdet.tracker import EventTracker

__all__ = ["DEFAULT_OFF_RATIOS", "DEFAULT_ON_GRID", "track_events", "tracks_to_events", "tune_thresholds"]

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
    min_duration: float = 0.0,
    min_gap: float = 0.0,
) -> list[Event]:
    """Events of one score track, as the engine's tracker makes them (closed at ``duration``)."""
    post = PostProcessing.create(thresholds, labels, frame_seconds, median_filter, min_duration, min_gap)
    tracker = EventTracker(labels, post, frame_seconds, name)
    tracker.push(np.asarray(scores, np.float32))
    tracker.close(duration)
    return list(tracker.closed_events)


def tracks_to_events(
    tracks: Mapping[str, Track], labels: Sequence[str], thresholds: Mapping[str, tuple[float, float]], **post: float
) -> dict[str, list[Event]]:
    """``{file: events}`` for every track."""
    return {
        name: track_events(scores, fs, dur, labels, thresholds, name, **post)
        for name, (scores, fs, dur) in tracks.items()
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

    The report holds, per class, the chosen pair, its event/segment F1 and those of the default 0.5/0.3.
    """
    from streamdet.metrics import event_based, segment_based

    durations = {name: float(t[2]) for name, t in tracks.items()}
    chosen: dict[str, tuple[float, float]] = {}
    report: dict[str, Any] = {"objective": f"event_f1 + {segment_weight} * segment_f1", "classes": {}}
    mid = float(np.median(on_grid))
    for c, label in enumerate(labels):
        sub = {name: (scores[:, c : c + 1], fs, dur) for name, (scores, fs, dur) in tracks.items()}
        gt = {name: [e for e in ground_truth.get(name, []) if e.label == label] for name in tracks}

        def score(on: float, off: float, label: str = label, sub: Mapping = sub, gt: Mapping = gt) -> tuple:
            pred = tracks_to_events(sub, [label], {label: (on, off)}, **post)
            ev = event_based(pred, gt, labels=[label], durations=durations).classes[label]["f1"]
            seg = segment_based(pred, gt, labels=[label], durations=durations).classes[label]["f1"]
            ev, seg = (0.0 if np.isnan(v) else float(v) for v in (ev, seg))
            return ev + segment_weight * seg, ev, seg

        best: tuple | None = None
        for on in on_grid:
            for ratio in off_ratios:
                off = round(on * ratio, 3)
                obj, ev, seg = score(on, off)
                key = (round(obj, 6), -abs(on - mid), -abs(ratio - 0.7))
                if best is None or key > best[0]:
                    best = (key, on, off, ev, seg)
        assert best is not None
        _, on, off, ev, seg = best
        chosen[label] = (float(on), float(off))
        _, ev0, seg0 = score(0.5, 0.3)
        report["classes"][label] = {
            "on": float(on),
            "off": float(off),
            "event_f1": round(ev, 4),
            "segment_f1": round(seg, 4),
            "default_event_f1": round(ev0, 4),
            "default_segment_f1": round(seg0, 4),
        }
    return chosen, report
