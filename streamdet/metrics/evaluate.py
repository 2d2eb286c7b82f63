"""One entry point that runs several metrics on one prediction table (what ``streamdet eval`` calls)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..events import Event
from ._common import MetricResult, evaluated_files
from .clip import clip_map_from_events
from .collar import event_based
from .intersection import intersection_f1
from .io import EventTable
from .psds import PSDS1, PSDS2, PSDSParams, psds_from_operating_points

METRICS = ("intersection", "event", "segment", "map", "psds1", "psds2")
"""Metric names understood by :func:`evaluate` (``psds1``/``psds2`` need durations)."""

DEFAULT_METRICS = ("intersection", "event", "segment")


def unscored_predictions(predictions: EventTable, ground_truth: EventTable) -> list[Event]:
    """The predicted events whose label never occurs in the ground truth: no metric scores them per class (the
    reference packages' arithmetic), so a false alarm of such a label is invisible in the figures."""
    classes = {ev.label for events in ground_truth.values() for ev in events}
    return [ev for events in predictions.values() for ev in events if ev.label not in classes]


def evaluate(predictions: EventTable | Sequence[EventTable], ground_truth: EventTable,
             durations: Mapping[str, float] | None = None, metrics: Iterable[str] = DEFAULT_METRICS, *,
             dtc: float = 0.5, gtc: float = 0.5, cttc: float = 0.3, t_collar: float = 0.2,
             percentage_of_length: float = 0.2, time_resolution: float = 1.0) -> dict[str, MetricResult]:
    """Run the named metrics and return their results by name.

    Args:
        predictions: one detection table, or several (operating points: PSDS uses all of them, the
            other metrics the first).
        ground_truth: reference events per file.
        durations: file durations; restricts the evaluated files and is required by ``psds1``/``psds2``.
        metrics: names from :data:`METRICS`.
        dtc, gtc, cttc: intersection-based F1 criteria (psds_eval defaults).
        t_collar, percentage_of_length: event-based collars.
        time_resolution: segment length for segment-based metrics.
    """
    from .segment import segment_based

    tables = [predictions] if isinstance(predictions, Mapping) else list(predictions)
    if not tables:
        raise ValueError("no predictions given")
    first = tables[0]
    results: dict[str, MetricResult] = {}
    for name in metrics:
        if name == "intersection":
            results[name] = intersection_f1(first, ground_truth, durations, dtc=dtc, gtc=gtc, cttc=cttc)
        elif name == "event":
            results[name] = event_based(first, ground_truth, durations=durations, t_collar=t_collar,
                                        percentage_of_length=percentage_of_length)
        elif name == "segment":
            results[name] = segment_based(first, ground_truth, durations=durations, time_resolution=time_resolution)
        elif name == "map":
            results[name] = clip_map_from_events(first, ground_truth, evaluated_files(ground_truth, first, durations))
        elif name in ("psds1", "psds2"):
            if durations is None:
                raise ValueError(f"{name} needs file durations (a metadata file)")
            params: PSDSParams = PSDS1 if name == "psds1" else PSDS2
            results[name] = psds_from_operating_points(tables, ground_truth, durations, params).to_metric(name)
        else:
            raise ValueError(f"unknown metric {name!r} (choose from {', '.join(METRICS)})")
    return results
