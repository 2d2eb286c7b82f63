"""Shared pieces: the result record, file and label sets, and sed_eval's rate conventions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .io import EventTable

NAN = float("nan")
EPS = 2.220446049250313e-16  # numpy.spacing(1), sed_eval's eps for error rates


@dataclass
class MetricResult:
    """One metric's figures: ``overall`` (e.g. ``f1_macro``), per-class figures, and the parameters used.

    Undefined figures (e.g. precision with no system output) are NaN, as in sed_eval and psds_eval.
    """

    name: str
    params: dict[str, Any]
    overall: dict[str, float]
    classes: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; NaN becomes None."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        return {"name": self.name, "params": clean(self.params), "overall": clean(self.overall),
                "classes": clean(self.classes), "left_out_of_macro": self.left_out_of_macro()}

    def left_out_of_macro(self) -> list[str]:
        """The classes whose F1 is undefined (no reference events, or no detections where the reference packages
        make that NaN), which the macro average skips, as sed_eval and psds_eval do."""
        return [label for label, figures in self.classes.items()
                if isinstance(figures.get("f1"), float) and math.isnan(figures["f1"])]


def evaluated_files(ground_truth: EventTable, predictions: EventTable,
                    durations: Mapping[str, float] | None = None) -> list[str]:
    """Files an evaluation covers: those of ``durations`` when given, else every file named in either table."""
    if durations is not None:
        return list(durations)
    names = dict.fromkeys(ground_truth)
    names.update(dict.fromkeys(predictions))
    return list(names)


def class_list(ground_truth: EventTable, labels: Iterable[str] | None = None) -> list[str]:
    """The evaluated classes: the sorted ground-truth labels, plus ``labels`` when given."""
    found = {ev.label for events in ground_truth.values() for ev in events}
    if labels is not None:
        found.update(labels)
    return sorted(found)


def precision(ntp: float, nsys: float) -> float:
    """``ntp / nsys``; NaN when there is no system output (sed_eval)."""
    return NAN if nsys == 0 else ntp / nsys


def recall(ntp: float, nref: float) -> float:
    """``ntp / nref``; NaN when there is no reference (sed_eval)."""
    return NAN if nref == 0 else ntp / nref


def f_measure(p: float, r: float) -> float:
    """Harmonic mean of precision and recall; 0 when both are 0, NaN when either is NaN (sed_eval)."""
    if p == 0 and r == 0:
        return 0.0
    return 2 * p * r / (p + r)


def prf(ntp: float, nsys: float, nref: float) -> dict[str, float]:
    """Precision, recall and F1 from counts, following sed_eval."""
    p, r = precision(ntp, nsys), recall(ntp, nref)
    return {"f1": f_measure(p, r), "precision": p, "recall": r}


def nanmean(values: Iterable[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else NAN
