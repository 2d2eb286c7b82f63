"""Polyphonic Sound Detection Score (PSDS), from operating points (psds_eval 0.5.3) or from score tracks.

Each operating point (one set of detections) gives per class a true-positive ratio ``TPR``, a
false-positive rate ``FPR`` (per ``unit`` of audio) and cross-trigger rates ``CTR[k]`` (per ``unit`` of
class-``k`` ground truth); the effective FPR is ``eFPR = FPR + alpha_ct * mean_k CTR[k]``. A zero point
is added; each class's ROC is the staircase ``TPR_c(x) = max{TPR : eFPR <= x}``, evaluated on the union
of all eFPR values; the PSD-ROC is ``mean_c - alpha_st * std_c`` (population std) clipped at 0, and
PSDS is its area up to ``max_efpr`` divided by ``max_efpr``.

Score tracks (:class:`~streamdet.scores.ScoreTrack`) are thresholded (``score >= threshold`` is active) into one
operating point per threshold; with every distinct score as a threshold this is the exact, threshold-free PSDS of
sed_scores_eval, whose criteria compare overlap durations rounded to microseconds (``time_decimals=6``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..events import Event
from ..scores import ScoreTrack
from ._common import MetricResult, class_list
from .intersection import IntersectionCounts, check_no_overlaps, intersection_counts
from .io import EventTable

SECONDS_PER_UNIT = {"minute": 60, "hour": 3600, "day": 24 * 3600, "month": 30 * 24 * 3600, "year": 365 * 24 * 3600}


@dataclass(frozen=True)
class PSDSParams:
    """A PSDS parameter set (the DCASE scenarios are :data:`PSDS1` and :data:`PSDS2`)."""

    dtc: float = 0.5
    gtc: float = 0.5
    cttc: float = 0.3
    alpha_ct: float = 0.0
    alpha_st: float = 0.0
    max_efpr: float | None = 100.0
    unit: str = "hour"


PSDS1 = PSDSParams(dtc=0.7, gtc=0.7, cttc=0.3, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0)
"""DCASE scenario 1: accurate localisation, no cross-trigger penalty."""
PSDS2 = PSDSParams(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1.0, max_efpr=100.0)
"""DCASE scenario 2: fast reaction, cross-triggers penalised."""


@dataclass
class PSDResult:
    """PSDS value and its PSD-ROC (``efpr`` x-points, ``etpr`` y-points) and per-class TPR staircases."""

    value: float
    efpr: np.ndarray
    etpr: np.ndarray
    class_tpr: dict[str, np.ndarray]
    params: PSDSParams
    n_operating_points: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def to_metric(self, name: str = "psds") -> MetricResult:
        """The :class:`MetricResult` form (overall ``psds``; per class the area under its own TPR/eFPR staircase)."""
        top = self._max
        per_class = {c: {"auc": _auc(self.efpr, tpr, top) / top if top > 0 else float("nan")}
                     for c, tpr in self.class_tpr.items()}
        params = {**asdict(self.params), "max_efpr": self._max, "n_operating_points": self.n_operating_points}
        return MetricResult(name, params, {"psds": self.value, **self.extra}, per_class)

    @property
    def _max(self) -> float:
        return float(self.params.max_efpr if self.params.max_efpr is not None else np.max(self.efpr))


def rates(counts: IntersectionCounts, unit: str = "hour") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tpr[c], fpr[c], ctr[c, k])`` of one operating point; ``ctr`` has NaN on its diagonal."""
    seconds = SECONDS_PER_UNIT[unit]
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = counts.tp / counts.n_ref
        fpr = counts.fp * seconds / counts.dataset_duration
        ctr = counts.ct * seconds / counts.ref_duration[None, :]
    np.fill_diagonal(ctr, np.nan)
    return tpr, fpr, ctr


def _staircase(x: np.ndarray, xp: np.ndarray, yp: np.ndarray) -> np.ndarray:
    """``max{yp : xp <= x}`` at each x (0 where none), i.e. psds_eval's ``step_curve``."""
    order = np.argsort(xp, kind="stable")
    xs, ys = xp[order], np.maximum.accumulate(yp[order])
    idx = np.searchsorted(xs, x, side="right") - 1
    return np.where(idx >= 0, ys[np.maximum(idx, 0)], 0.0)


def _auc(x: np.ndarray, y: np.ndarray, max_x: float) -> float:
    """Left-step area under ``(x, y)`` up to ``max_x`` (psds_eval's ``_auc``)."""
    if max_x not in x:
        pos = int(np.searchsorted(x, max_x))
        x = np.insert(x, pos, max_x)
        y = np.insert(y, pos, y[pos - 1] if pos > 0 else 0.0)
    keep = x <= max_x
    return float(np.sum(np.diff(x[keep]) * y[keep][:-1]))


def psd_from_rates(classes: Sequence[str], points: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   params: PSDSParams) -> PSDResult:
    """PSDS from per-operating-point ``(tpr, fpr, ctr)`` rates (see the module docstring)."""
    if not 0.0 <= params.alpha_ct <= 1.0:
        raise ValueError("alpha_ct must be between 0 and 1")
    if params.alpha_st < 0:
        raise ValueError("alpha_st must be >= 0")
    n = len(classes)
    tpr = np.stack([p[0] for p in points] + [np.zeros(n)], axis=1)  # [class, op], zero point last
    fpr = np.stack([p[1] for p in points] + [np.zeros(n)], axis=1)
    if n > 1:
        ctr = np.stack([p[2] for p in points] + [np.full((n, n), np.nan)], axis=2)
        ctr[..., -1] = 0.0
        np.einsum("iik->ik", ctr)[...] = np.nan
        efpr = fpr + params.alpha_ct * np.nanmean(ctr, axis=1)
    else:
        efpr = fpr  # no other class to cross-trigger on
    x = np.unique(efpr)
    curves = np.stack([_staircase(x, efpr[c], tpr[c]) for c in range(n)])
    etpr = np.nan_to_num(curves.mean(0) - params.alpha_st * curves.std(0), nan=0.0)
    etpr = np.maximum(etpr, 0.0)
    max_efpr = float(params.max_efpr) if params.max_efpr is not None else float(np.max(x))
    value = _auc(x, etpr, max_efpr) / max_efpr if max_efpr > 0 else float("nan")
    return PSDResult(value, x, etpr, dict(zip(classes, curves, strict=True)), params, n_operating_points=len(points))


def psds_from_operating_points(operating_points: Iterable[EventTable], ground_truth: EventTable,
                               durations: Mapping[str, float], params: PSDSParams = PSDS1,
                               labels: Iterable[str] | None = None) -> PSDResult:
    """PSDS from several detection sets (one per operating point), exactly as psds_eval 0.5.3.

    Args:
        operating_points: detection tables, e.g. one per decision threshold.
        ground_truth: reference events per file.
        durations: the duration of every evaluated file (DCASE metadata); FP rates divide by their sum.
        params: thresholds and weights (:data:`PSDS1`, :data:`PSDS2` or your own).
        labels: extra classes besides the ground-truth labels.
    """
    check_no_overlaps(ground_truth, "ground truth")
    classes = class_list(ground_truth, labels)
    points = []
    for op in operating_points:
        counts = intersection_counts(op, ground_truth, durations, dtc=params.dtc, gtc=params.gtc,
                                     cttc=params.cttc, classes=classes, check=False)
        check_no_overlaps(op, "operating point")
        points.append(rates(counts, params.unit))
    if not points:
        raise ValueError("no operating point given")
    return psd_from_rates(classes, points, params)


def detect(track: ScoreTrack, threshold: float, name: str, label: str | None = None) -> list[Event]:
    """Events where ``score >= threshold`` (contiguous frames merged), for every label or just ``label``; frame
    boundaries are the track's :attr:`~streamdet.scores.ScoreTrack.timestamps`."""
    events: list[Event] = []
    stamps = track.timestamps
    for c, lab in enumerate(track.labels):
        if label is not None and lab != label:
            continue
        active = np.concatenate(([False], track.scores[:, c] >= threshold, [False]))
        change = np.flatnonzero(active[1:] != active[:-1])
        for start, stop in zip(change[::2], change[1::2], strict=True):
            peak = float(track.scores[start:stop, c].max())
            events.append(Event(lab, float(stamps[start]), float(stamps[stop]), peak, name))
    return events


def psds_from_scores(scores: Mapping[str, ScoreTrack], ground_truth: EventTable, durations: Mapping[str, float],
                     params: PSDSParams = PSDS1, thresholds: Sequence[float] | int | None = None,
                     time_decimals: int | None = 6) -> PSDResult:
    """PSDS from score tracks, one operating point per decision threshold.

    Args:
        scores: a :class:`ScoreTrack` per file (same labels everywhere).
        ground_truth: reference events per file.
        durations: the duration of every evaluated file.
        params: :data:`PSDS1`, :data:`PSDS2` or your own.
        thresholds: ``None`` uses every distinct score per class (exact, like sed_scores_eval; cost grows
            with the number of distinct scores), an int ``n`` uses ``n`` evenly spaced thresholds in
            ``[1/(2n), 1 - 1/(2n)]`` (the DCASE baseline's grid), a sequence uses those values.
        time_decimals: how the detection/ground-truth criteria round (see :func:`intersection_counts`): 6 as
            sed_scores_eval, ``None`` as psds_eval.
    """
    check_no_overlaps(ground_truth, "ground truth")
    tracks = list(scores.values())
    if not tracks:
        raise ValueError("no score track given")
    classes = class_list(ground_truth, tracks[0].labels)
    if isinstance(thresholds, int):
        thresholds = list(np.linspace(1 / (2 * thresholds), 1 - 1 / (2 * thresholds), thresholds))
    per_class_points: dict[str, list[tuple[float, float, np.ndarray]]] = {}
    for i, label in enumerate(classes):
        if thresholds is None:
            values = [t.scores[:, t.labels.index(label)] for t in tracks if label in t.labels]
            grid = np.unique(np.concatenate(values)) if values else np.zeros(0)
        else:
            grid = np.asarray(thresholds, dtype=float)
        points = []
        for thr in grid:
            dets = {name: detect(track, float(thr), name, label) for name, track in scores.items()}
            counts = intersection_counts(dets, ground_truth, durations, dtc=params.dtc, gtc=params.gtc,
                                         cttc=params.cttc, classes=classes, check=False,
                                         time_decimals=time_decimals)
            tpr, fpr, ctr = rates(counts, params.unit)
            points.append((tpr[i], fpr[i], ctr[i]))
        per_class_points[label] = points
    # Assemble per-class points into operating-point-shaped rates: each class's curve only uses its own row.
    n = len(classes)
    n_ops = max((len(p) for p in per_class_points.values()), default=0)
    ops = []
    for k in range(n_ops):
        tpr, fpr, ctr = np.zeros(n), np.zeros(n), np.full((n, n), np.nan)
        for i, label in enumerate(classes):
            pts = per_class_points[label]
            t, f, c = pts[min(k, len(pts) - 1)] if pts else (0.0, 0.0, np.zeros(n))
            tpr[i], fpr[i], ctr[i] = t, f, c
        ops.append((tpr, fpr, ctr))
    if not ops:
        ops = [(np.zeros(n), np.zeros(n), np.full((n, n), np.nan))]
    return psd_from_rates(classes, ops, params)
