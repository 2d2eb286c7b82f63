"""Clip-level average precision and mAP (AudioSet's figure), as ``sklearn.metrics.average_precision_score``.

AP of one class is ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds taken in decreasing
order (tied scores form one threshold). A class without positive clips has no AP (NaN) and is left out
of the mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ._common import NAN, MetricResult, class_list
from .io import EventTable


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision of one class from binary targets and scores; NaN when there is no positive."""
    y_true = np.asarray(y_true, dtype=bool).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} differ in shape")
    n_pos = int(y_true.sum())
    if n_pos == 0:
        return NAN
    order = np.argsort(-y_score, kind="mergesort")
    score, hit = y_score[order], y_true[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # last index of each distinct score
    tps = np.cumsum(hit)[last]
    precision = tps / (last + 1)
    recall_step = np.diff(np.r_[0, tps]) / n_pos
    return float(np.sum(recall_step * precision))


def clip_map(y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str]) -> MetricResult:
    """Per-class AP and their mean (mAP) from ``[clips, classes]`` targets and scores.

    Returns:
        A :class:`MetricResult` with overall ``map`` and ``n_classes`` (classes with a positive clip);
        per class ``ap`` and ``n_pos``.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=float)
    if y_true.shape != y_score.shape or y_true.ndim != 2 or y_true.shape[1] != len(labels):
        raise ValueError(f"expected [clips, {len(labels)}] arrays, got {y_true.shape} and {y_score.shape}")
    per_class = {}
    for c, label in enumerate(labels):
        per_class[label] = {"ap": average_precision(y_true[:, c], y_score[:, c]), "n_pos": float(y_true[:, c].sum())}
    aps = [v["ap"] for v in per_class.values() if not np.isnan(v["ap"])]
    overall = {"map": float(np.mean(aps)) if aps else NAN, "n_classes": float(len(aps))}
    return MetricResult("clip_map", {}, overall, per_class)


def clip_targets(predictions: EventTable, ground_truth: EventTable, files: Iterable[str],
                 labels: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Clip-level targets and scores from event tables.

    A clip is positive for a class when its ground truth has an event of that class; its score is the
    highest confidence of its predicted events of that class (0 without one).

    Returns:
        ``(y_true [clips, classes], y_score [clips, classes], classes)``.
    """
    classes = class_list(ground_truth, labels)
    index = {c: i for i, c in enumerate(classes)}
    files = list(files)
    y_true = np.zeros((len(files), len(classes)), dtype=bool)
    y_score = np.zeros((len(files), len(classes)))
    for f, name in enumerate(files):
        for ev in ground_truth.get(name, []):
            y_true[f, index[ev.label]] = True
        for ev in predictions.get(name, []):
            if ev.label in index:
                y_score[f, index[ev.label]] = max(y_score[f, index[ev.label]], ev.confidence)
    return y_true, y_score, classes


def clip_map_from_events(predictions: EventTable, ground_truth: EventTable, files: Iterable[str],
                         labels: Iterable[str] | None = None) -> MetricResult:
    """Clip-level mAP of event tables (see :func:`clip_targets` for how clips are scored)."""
    y_true, y_score, classes = clip_targets(predictions, ground_truth, files, labels)
    return clip_map(y_true, y_score, classes)
