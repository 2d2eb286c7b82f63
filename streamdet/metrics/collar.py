"""Event-based (collar-based) precision, recall and F1, as sed_eval's ``EventBasedMetrics`` computes them.

An estimated event matches a reference event of the same label when its onset is within ``t_collar``
of the reference onset and its offset within ``max(t_collar, percentage_of_length * reference length)``
of the reference offset (bounds inclusive). Each file's matches are a maximum bipartite matching
(sed_eval's ``'optimal'`` matching). Micro figures pool the counts of every event (labels outside the
class list included, as sed_eval's overall figures do); macro figures are the NaN-ignoring mean of the
per-class figures. Per-class error rate is ``(FN + FP) / Nref``; the overall error rate, whose
substitution count depends on sed_eval's particular matching, is not reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ._common import EPS, MetricResult, class_list, evaluated_files, nanmean, prf
from .io import EventTable


def _max_matching(adjacency: np.ndarray) -> int:
    """Size of a maximum matching of the bipartite graph ``adjacency[ref, est]`` (augmenting paths)."""
    n_ref, n_est = adjacency.shape
    if n_ref == 0 or n_est == 0:
        return 0
    neighbours = [np.flatnonzero(row).tolist() for row in adjacency]
    owner = [-1] * n_est

    def augment(r: int, seen: list[bool]) -> bool:
        for e in neighbours[r]:
            if not seen[e]:
                seen[e] = True
                if owner[e] < 0 or augment(owner[e], seen):
                    owner[e] = r
                    return True
        return False

    return sum(augment(r, [False] * n_est) for r in range(n_ref) if neighbours[r])


def collar_hits(ref_on: np.ndarray, ref_off: np.ndarray, est_on: np.ndarray, est_off: np.ndarray,
                t_collar: float = 0.2, percentage_of_length: float = 0.2,
                evaluate_onset: bool = True, evaluate_offset: bool = True) -> np.ndarray:
    """Boolean matrix ``[ref, est]`` of pairs whose onsets/offsets are within the collars."""
    hit = np.ones((len(ref_on), len(est_on)), dtype=bool)
    if evaluate_onset:
        hit &= np.abs(ref_on[:, None] - est_on[None, :]) <= t_collar
    if evaluate_offset:
        tolerance = np.maximum(t_collar, percentage_of_length * (ref_off - ref_on))
        hit &= np.abs(ref_off[:, None] - est_off[None, :]) <= tolerance[:, None]
    return hit


def event_based(predictions: EventTable, ground_truth: EventTable, *, labels: Iterable[str] | None = None,
                durations: Mapping[str, float] | None = None, t_collar: float = 0.2,
                percentage_of_length: float = 0.2, evaluate_onset: bool = True, evaluate_offset: bool = True,
                zero_score_empty_output: bool = True) -> MetricResult:
    """Event-based P/R/F1 (micro and macro) with onset/offset collars, exactly as sed_eval 0.2.1.

    Args:
        predictions: estimated events per file.
        ground_truth: reference events per file.
        labels: extra classes to report besides the ground-truth labels.
        durations: when given, only these files are evaluated; otherwise every file of either table.
        t_collar: onset collar and minimum offset collar, seconds.
        percentage_of_length: offset collar as a fraction of the reference length (when larger).
        evaluate_onset, evaluate_offset: which boundaries must match.
        zero_score_empty_output: precision is 0 (not NaN) when a class has no output, as DCASE
            baselines set with sed_eval's ``empty_system_output_handling='zero_score'``.

    Returns:
        A :class:`MetricResult` with overall ``f1_micro``, ``precision_micro``, ``recall_micro``,
        ``f1_macro``, ``precision_macro``, ``recall_macro``, ``error_rate_macro``, ``deletion_rate_macro``,
        ``insertion_rate_macro``, ``n_ref``, ``n_sys``, ``n_tp``; per class the same without suffixes.
    """
    if not (evaluate_onset or evaluate_offset):
        raise ValueError("evaluate_onset and evaluate_offset cannot both be False")
    classes = class_list(ground_truth, labels)
    counts = {c: [0.0, 0.0, 0.0] for c in classes}  # ntp, nsys, nref
    total = [0.0, 0.0, 0.0]
    for name in evaluated_files(ground_truth, predictions, durations):
        ref = ground_truth.get(name, [])
        est = predictions.get(name, [])
        total[1] += len(est)
        total[2] += len(ref)
        for label in {ev.label for ev in ref} | {ev.label for ev in est}:
            r = [ev for ev in ref if ev.label == label]
            e = [ev for ev in est if ev.label == label]
            hits = collar_hits(np.array([ev.onset for ev in r]), np.array([ev.offset for ev in r]),
                               np.array([ev.onset for ev in e]), np.array([ev.offset for ev in e]),
                               t_collar, percentage_of_length, evaluate_onset, evaluate_offset)
            ntp = _max_matching(hits)
            total[0] += ntp
            if label in counts:
                c = counts[label]
                c[0] += ntp
                c[1] += len(e)
                c[2] += len(r)

    def scores(ntp: float, nsys: float, nref: float) -> dict[str, float]:
        out = prf(ntp, nsys, nref)
        if zero_score_empty_output and nsys == 0:
            out = {"f1": 0.0 if nref > 0 else float("nan"), "precision": 0.0, "recall": out["recall"]}
        return out

    per_class: dict[str, dict[str, float]] = {}
    for label, (ntp, nsys, nref) in counts.items():
        deletion = (nref - ntp) / (nref + EPS)
        insertion = (nsys - ntp) / (nref + EPS)
        per_class[label] = {**scores(ntp, nsys, nref), "error_rate": deletion + insertion,
                            "deletion_rate": deletion, "insertion_rate": insertion,
                            "n_ref": nref, "n_sys": nsys, "n_tp": ntp}
    micro = scores(*total)
    overall = {f"{k}_micro": v for k, v in micro.items()}
    for key in ("f1", "precision", "recall", "error_rate", "deletion_rate", "insertion_rate"):
        overall[f"{key}_macro"] = nanmean(per_class[c][key] for c in classes)
    overall.update(n_ref=total[2], n_sys=total[1], n_tp=total[0])
    params = {"t_collar": t_collar, "percentage_of_length": percentage_of_length, "evaluate_onset": evaluate_onset,
              "evaluate_offset": evaluate_offset, "zero_score_empty_output": zero_score_empty_output}
    return MetricResult("event_based", params, overall, per_class)
