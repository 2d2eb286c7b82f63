"""Segment-based F1 and error rate, as sed_eval's ``SegmentBasedMetrics`` computes them.

Each file is cut into segments of ``time_resolution`` seconds; an event marks segments
``floor(onset / res)`` up to ``ceil(offset / res)`` (exclusive) active for its class. A file's length is
its duration when ``durations`` are given, else the latest offset among its reference and estimated
events; events past that length are cut. Overall counts pool every (segment, class) pair; the overall
error rate counts per segment ``S = min(Nref, Nsys) - Ntp``, ``D = max(0, Nref - Nsys)`` and
``I = max(0, Nsys - Nref)``. Events whose label is not among the evaluated classes are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..events import Event
from ._common import EPS, MetricResult, class_list, evaluated_files, nanmean, prf
from .io import EventTable

MAX_ROLL_CELLS = 1 << 27
"""Largest segments x classes table one file may need (128 MiB of booleans, twice): past it the metric refuses
with a ValueError naming the file instead of allocating."""


def event_roll(events: list[Event], classes: list[str], n_segments: int, time_resolution: float) -> np.ndarray:
    """Binary activity matrix ``[segment, class]`` of ``events`` (labels outside ``classes`` are skipped)."""
    roll = np.zeros((n_segments, len(classes)), dtype=bool)
    index = {c: i for i, c in enumerate(classes)}
    for ev in events:
        if ev.label in index:
            start = math.floor(ev.onset * 1 / float(time_resolution))
            stop = math.ceil(ev.offset * 1 / float(time_resolution))
            roll[start:stop, index[ev.label]] = True
    return roll


def segment_based(predictions: EventTable, ground_truth: EventTable, *, labels: Iterable[str] | None = None,
                  durations: Mapping[str, float] | None = None, time_resolution: float = 1.0,
                  zero_score_empty_output: bool = True) -> MetricResult:
    """Segment-based P/R/F1 and error rates (micro/overall and macro), exactly as sed_eval 0.2.1.

    Args:
        predictions: estimated events per file.
        ground_truth: reference events per file.
        labels: extra classes besides the ground-truth labels.
        durations: file lengths; when given, only these files are evaluated (sed_eval's
            ``evaluated_length_seconds``), otherwise every file of either table, to its latest offset.
        time_resolution: segment length in seconds.
        zero_score_empty_output: precision is 0 (not NaN) when there is no output (sed_eval's
            ``empty_system_output_handling='zero_score'``).

    Returns:
        A :class:`MetricResult`; overall ``f1_micro``, ``precision_micro``, ``recall_micro``, ``error_rate``,
        ``substitution_rate``, ``deletion_rate``, ``insertion_rate``, the macro means ``f1_macro``,
        ``precision_macro``, ``recall_macro``, ``error_rate_macro``, and segment counts; per class the
        same figures (class error rate = (FN + FP) / Nref).
    """
    if time_resolution <= 0:
        raise ValueError("time_resolution must be > 0")
    classes = class_list(ground_truth, labels)
    n_classes = len(classes)
    tp = np.zeros(n_classes)
    nsys = np.zeros(n_classes)
    nref = np.zeros(n_classes)
    subs = dels = ins = 0.0
    for name in evaluated_files(ground_truth, predictions, durations):
        ref = ground_truth.get(name, [])
        est = predictions.get(name, [])
        if durations is not None:
            length = durations[name]
        else:
            length = max([0.0] + [ev.offset for ev in ref] + [ev.offset for ev in est])
        n_segments = math.ceil(length * 1 / float(time_resolution))
        if n_segments * max(1, n_classes) > MAX_ROLL_CELLS:
            raise ValueError(f"{name}: {length:g} s in segments of {time_resolution:g} s for {n_classes} classes "
                             f"needs {n_segments * n_classes:,} cells, more than {MAX_ROLL_CELLS:,}; "
                             f"use longer segments")
        r = event_roll(ref, classes, n_segments, time_resolution)
        e = event_roll(est, classes, n_segments, time_resolution)
        both = r & e
        tp += both.sum(0)
        nsys += e.sum(0)
        nref += r.sum(0)
        seg_tp, seg_ref, seg_sys = both.sum(1), r.sum(1), e.sum(1)
        subs += float((np.minimum(seg_ref, seg_sys) - seg_tp).sum())
        dels += float(np.maximum(0, seg_ref - seg_sys).sum())
        ins += float(np.maximum(0, seg_sys - seg_ref).sum())

    def scores(ntp: float, n_sys: float, n_ref: float) -> dict[str, float]:
        out = prf(ntp, n_sys, n_ref)
        if zero_score_empty_output and n_sys == 0:
            out = {"f1": 0.0 if n_ref > 0 else float("nan"), "precision": 0.0, "recall": out["recall"]}
        return out

    per_class: dict[str, dict[str, float]] = {}
    for i, label in enumerate(classes):
        ntp, n_sys, n_ref = float(tp[i]), float(nsys[i]), float(nref[i])
        deletion = (n_ref - ntp) / (n_ref + EPS)
        insertion = (n_sys - ntp) / (n_ref + EPS)
        per_class[label] = {**scores(ntp, n_sys, n_ref), "error_rate": deletion + insertion,
                            "deletion_rate": deletion, "insertion_rate": insertion,
                            "n_ref": n_ref, "n_sys": n_sys, "n_tp": ntp}
    total_ref = float(nref.sum())
    overall = {f"{k}_micro": v for k, v in scores(float(tp.sum()), float(nsys.sum()), total_ref).items()}
    rates = {"substitution_rate": subs / (total_ref + EPS), "deletion_rate": dels / (total_ref + EPS),
             "insertion_rate": ins / (total_ref + EPS)}
    overall["error_rate"] = rates["substitution_rate"] + rates["deletion_rate"] + rates["insertion_rate"]
    overall.update(rates)
    for key in ("f1", "precision", "recall", "error_rate", "deletion_rate", "insertion_rate"):
        overall[f"{key}_macro"] = nanmean(per_class[c][key] for c in classes)
    overall.update(n_ref=total_ref, n_sys=float(nsys.sum()), n_tp=float(tp.sum()))
    params = {"time_resolution": time_resolution, "zero_score_empty_output": zero_score_empty_output}
    return MetricResult("segment_based", params, overall, per_class)
