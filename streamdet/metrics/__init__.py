"""Sound-event detection metrics in numpy, exact against the DCASE reference implementations.

- :func:`intersection_f1`, :func:`intersection_counts`: intersection-based F1 (psds_eval 0.5.3).
- :func:`psds_from_operating_points`, :func:`psds_from_scores`, :data:`PSDS1`, :data:`PSDS2`: PSDS.
- :func:`event_based`: collar-based P/R/F1 (sed_eval 0.2.1 ``EventBasedMetrics``).
- :func:`segment_based`: segment-based P/R/F1 and error rate (sed_eval ``SegmentBasedMetrics``).
- :func:`average_precision`, :func:`clip_map`: clip-level AP and mAP (sklearn's definition).
- :func:`read_events`, :func:`read_durations`, writers: DCASE TSV, CSV and ``streamdet file`` JSONL.

Events are :class:`streamdet.events.Event` records with the audio file name in ``stream``, grouped per
file in an :data:`EventTable`. Nothing here imports torch, pandas or the reference packages.
"""

from __future__ import annotations

from ._common import MetricResult
from .clip import average_precision, clip_map, clip_map_from_events, clip_targets
from .collar import event_based
from .evaluate import DEFAULT_METRICS, METRICS, evaluate, unscored_predictions
from .intersection import IntersectionCounts, intersection_counts, intersection_f1
from .io import (
    Durations,
    EvalInputError,
    EventTable,
    events_from_records,
    labels_of,
    read_durations,
    read_events,
    rename_files,
    write_durations,
    write_events_jsonl,
    write_events_tsv,
)
from .psds import (
    PSDS1,
    PSDS2,
    PSDResult,
    PSDSParams,
    ScoreTrack,
    detect,
    psd_from_rates,
    psds_from_operating_points,
    psds_from_scores,
)
from .segment import segment_based

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "PSDS1",
    "PSDS2",
    "Durations",
    "EvalInputError",
    "EventTable",
    "IntersectionCounts",
    "MetricResult",
    "PSDResult",
    "PSDSParams",
    "ScoreTrack",
    "average_precision",
    "clip_map",
    "clip_map_from_events",
    "clip_targets",
    "detect",
    "evaluate",
    "event_based",
    "events_from_records",
    "intersection_counts",
    "intersection_f1",
    "labels_of",
    "psd_from_rates",
    "psds_from_operating_points",
    "psds_from_scores",
    "read_durations",
    "read_events",
    "rename_files",
    "segment_based",
    "unscored_predictions",
    "write_durations",
    "write_events_jsonl",
    "write_events_tsv",
]
