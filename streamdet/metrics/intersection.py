"""Intersection-based counts and F1 (Bilen et al., ICASSP 2020), exactly as psds_eval 0.5.3 computes them.

For a detection ``d`` and the ground-truth events ``g`` of the file:

- DTC: ``d`` passes when it intersects a same-class ``g`` and the sum over same-class ``g`` of
  ``|d ∩ g| / |d|`` is at least ``dtc``.
- GTC: ``g`` is a true positive when it intersects a DTC-passing same-class detection and the sum over
  DTC-passing same-class ``d`` of ``|d ∩ g| / |g|`` is at least ``gtc``.
- False positive: a detection that fails the DTC and lies (in part) within its file, i.e. within
  ``[0, duration]`` (psds_eval's injected "world" event); detections that pass the DTC are never false
  positives, even when their ground truth fails the GTC.
- Cross-trigger with class ``k``: a detection failing the DTC whose summed ``|d ∩ g| / |d|`` over the
  class-``k`` ground truth it intersects is at least ``cttc``.

With ``time_decimals`` set, the criteria compare summed intersection durations with ``threshold x length``, both
rounded to that many decimals of a second, as sed_scores_eval does (``time_decimals=6``) - the two rules only
differ when a ratio lies within rounding error of its threshold (e.g. 0.15 s of a 1.5 s detection at DTC 0.1).

Intersections are strictly positive overlaps. Zero-length events are dropped; overlapping events of
one class in one table are an error (as in psds_eval); identical duplicates are kept and counted
twice. Per-class F1 is ``2 TP / (2 TP + FP + FN)`` and, following psds_eval, NaN for a class without
any true positive, which the macro mean then skips.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ._common import NAN, MetricResult, class_list, evaluated_files
from .io import EventTable


@dataclass
class IntersectionCounts:
    """Counts of one operating point over a dataset.

    Attributes:
        classes: class names (sorted).
        tp: true-positive ground-truth events per class.
        fp: false-positive detections per class.
        ct: ``ct[i, k]``: class-``i`` detections cross-triggering on class ``k`` (diagonal 0).
        n_ref: ground-truth events per class.
        ref_duration: total ground-truth duration per class, seconds.
        dataset_duration: total duration of the files with a known duration, seconds.
    """

    classes: list[str]
    tp: np.ndarray
    fp: np.ndarray
    ct: np.ndarray
    n_ref: np.ndarray
    ref_duration: np.ndarray
    dataset_duration: float


def _arrays(events: list, label: str) -> tuple[np.ndarray, np.ndarray]:
    sel = [(ev.onset, ev.offset) for ev in events if ev.label == label and ev.offset > ev.onset]
    if not sel:
        return np.zeros(0), np.zeros(0)
    arr = np.array(sel, dtype=float)
    order = np.argsort(arr[:, 0], kind="stable")
    return arr[order, 0], arr[order, 1]


def check_no_overlaps(events: EventTable, what: str) -> None:
    """Raise ValueError when two events of one class overlap in one file (identical duplicates are allowed)."""
    for name, file_events in events.items():
        for label in {ev.label for ev in file_events}:
            spans = sorted({(ev.onset, ev.offset) for ev in file_events if ev.label == label and ev.offset > ev.onset})
            for (on1, off1), (on2, off2) in pairwise(spans):
                if on2 < off1:
                    raise ValueError(f"{what}: overlapping '{label}' events in {name}: "
                                     f"[{on1}, {off1}] and [{on2}, {off2}]")


def _overlap(d_on: np.ndarray, d_off: np.ndarray, g_on: np.ndarray, g_off: np.ndarray) -> np.ndarray:
    """``[det, gt]`` overlap durations, 0 where they do not strictly intersect."""
    inter = np.minimum(d_off[:, None], g_off[None, :]) - np.maximum(d_on[:, None], g_on[None, :])
    return np.where(inter > 0, inter, 0.0)


def _meets(inter: np.ndarray, lengths: np.ndarray, threshold: float, axis: int,
           time_decimals: int | None) -> np.ndarray:
    """Whether the overlaps ``inter`` summed along ``axis`` cover at least ``threshold`` of ``lengths``."""
    if time_decimals is None:  # psds_eval: sum of per-pair ratios
        shaped = lengths[:, None] if axis == 1 else lengths[None, :]
        return (inter / shaped).sum(axis) >= threshold
    return np.round(inter.sum(axis), time_decimals) >= np.round(threshold * lengths, time_decimals)


def intersection_counts(predictions: EventTable, ground_truth: EventTable, durations: Mapping[str, float] | None,
                        *, dtc: float = 0.5, gtc: float = 0.5, cttc: float | None = 0.3,
                        labels: Iterable[str] | None = None, classes: list[str] | None = None,
                        check: bool = True, time_decimals: int | None = None) -> IntersectionCounts:
    """TP/FP/cross-trigger counts of one set of detections (one operating point).

    Args:
        predictions: detections per file.
        ground_truth: reference events per file.
        durations: file durations (the DCASE metadata); ``None`` takes each file's latest event offset,
            which leaves F1 unchanged but understates the durations that PSDS rates divide by.
        dtc, gtc, cttc: the criteria thresholds in [0, 1]; ``cttc=None`` skips cross-triggers.
        labels: extra classes besides the ground-truth labels.
        classes: the exact class list (overrides ``labels``; used when the ground truth was prepared once).
        check: validate the tables (no overlapping same-class events).
        time_decimals: ``None`` compares overlap ratios with the thresholds (psds_eval); an int compares
            summed overlap durations with ``threshold x length`` rounded to that many decimals (sed_scores_eval).
    """
    for name, value in (("dtc", dtc), ("gtc", gtc), ("cttc", cttc)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if check:
        check_no_overlaps(ground_truth, "ground truth")
        check_no_overlaps(predictions, "predictions")
    if classes is None:
        classes = class_list(ground_truth, labels)
    if durations is None:
        durations = {name: max([0.0] + [ev.offset for ev in ground_truth.get(name, [])]
                               + [ev.offset for ev in predictions.get(name, [])])
                     for name in evaluated_files(ground_truth, predictions)}
    n = len(classes)
    tp, fp, n_ref = np.zeros(n), np.zeros(n), np.zeros(n)
    ct = np.zeros((n, n))
    ref_duration = np.zeros(n)
    for name in dict.fromkeys([*ground_truth, *predictions]):
        gts = [_arrays(ground_truth.get(name, []), c) for c in classes]
        dets = [_arrays(predictions.get(name, []), c) for c in classes]
        duration = durations.get(name)
        for i in range(n):
            g_on, g_off = gts[i]
            n_ref[i] += len(g_on)
            ref_duration[i] += float((g_off - g_on).sum())
            d_on, d_off = dets[i]
            if len(d_on) == 0:
                continue
            d_len = d_off - d_on
            inter = _overlap(d_on, d_off, g_on, g_off)
            touches = (inter > 0).any(1)
            dtc_pass = touches & _meets(inter, d_len, dtc, 1, time_decimals)
            if len(g_on):
                covered = inter[dtc_pass]
                gt_touch = (covered > 0).any(0)
                tp[i] += int((gt_touch & _meets(covered, g_off - g_on, gtc, 0, time_decimals)).sum())
            if duration is not None:
                in_file = (d_on < duration) & (d_off > 0) & (duration > 0)
                fp[i] += int((~dtc_pass & in_file).sum())
            if cttc is None:
                continue
            for k in range(n):
                if k == i or len(gts[k][0]) == 0:
                    continue
                other = _overlap(d_on, d_off, *gts[k])
                hit = ~dtc_pass & (other > 0).any(1) & _meets(other, d_len, cttc, 1, time_decimals)
                ct[i, k] += int(hit.sum())
    total = float(sum(d for d in durations.values() if d > 0))
    return IntersectionCounts(classes, tp, fp, ct, n_ref, ref_duration, total)


def intersection_f1(predictions: EventTable, ground_truth: EventTable, durations: Mapping[str, float] | None = None,
                    *, dtc: float = 0.5, gtc: float = 0.5, cttc: float | None = 0.3,
                    labels: Iterable[str] | None = None) -> MetricResult:
    """Intersection-based per-class and macro F1, exactly as ``psds_eval.PSDSEval.compute_macro_f_score``.

    The defaults are psds_eval's (DTC 0.5, GTC 0.5, CTTC 0.3), with which HTS-AT's DESED figures
    (48.42 / 50.67) are computed. Durations only decide which detections lie inside their file, so
    ``durations=None`` (each file's latest offset) gives the same F1. Detections whose label is not a
    ground-truth class (or in ``labels``) are ignored, as in psds_eval.

    Returns:
        A :class:`MetricResult` with overall ``f1_macro`` (NaN-skipping mean), ``f1_micro`` (from pooled
        counts), ``n_ref``, ``n_tp``, ``n_fp``; per class ``f1``, ``precision`` (TP/(TP+FP), counting
        true-positive ground truth, as psds_eval does), ``recall``, ``n_ref``, ``n_tp``, ``n_fp``.
    """
    counts = intersection_counts(predictions, ground_truth, durations, dtc=dtc, gtc=gtc, cttc=cttc, labels=labels)
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, label in enumerate(counts.classes):
        tp_i, fp_i, ref_i = float(counts.tp[i]), float(counts.fp[i]), float(counts.n_ref[i])
        fn_i = ref_i - tp_i
        f1 = 2 * tp_i / (2 * tp_i + fn_i + fp_i) if tp_i > 0 else NAN
        f1s.append(f1)
        per_class[label] = {"f1": f1, "precision": tp_i / (tp_i + fp_i) if tp_i + fp_i > 0 else NAN,
                            "recall": tp_i / ref_i if ref_i > 0 else NAN,
                            "n_ref": ref_i, "n_tp": tp_i, "n_fp": fp_i}
    kept = [f for f in f1s if not np.isnan(f)]
    ttp, tfp, tref = float(counts.tp.sum()), float(counts.fp.sum()), float(counts.n_ref.sum())
    overall = {"f1_macro": sum(kept) / len(kept) if kept else NAN,
               "f1_micro": 2 * ttp / (2 * ttp + (tref - ttp) + tfp) if (tref + tfp) > 0 else NAN,
               "n_ref": tref, "n_tp": ttp, "n_fp": tfp}
    return MetricResult("intersection", {"dtc": dtc, "gtc": gtc, "cttc": cttc}, overall, per_class)
