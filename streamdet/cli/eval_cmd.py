"""``streamdet eval PRED GT``: score detections against DCASE ground truth (numpy only, no torch)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .common import error, warn
from .text import plain

if TYPE_CHECKING:
    from ..metrics import MetricResult

MAX_SHOWN = 10  # unscored predictions listed by name
_PRED_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".ndjson", ".txt")


def _fail(message: str, code: int) -> typer.Exit:
    error(message)
    return typer.Exit(code)


def _prediction_paths(pred: Path) -> list[Path]:
    if pred.is_dir():
        paths = sorted(p for p in pred.iterdir() if p.is_file() and p.suffix.lower() in _PRED_SUFFIXES)
        if not paths:
            raise _fail(f"{pred}: directory holds no prediction files ({', '.join(_PRED_SUFFIXES)})", 2)
        return paths
    if not pred.is_file():
        raise _fail(f"{pred}: no such file or directory", 2)
    return [pred]


def _metric_names(values: list[str] | None, has_meta: bool) -> list[str]:
    from ..metrics import DEFAULT_METRICS, METRICS

    names = [n.strip().lower() for v in (values or list(DEFAULT_METRICS)) for n in v.split(",") if n.strip()]
    for name in names:
        if name not in METRICS:
            raise _fail(f"unknown metric {name!r}; choose from {', '.join(METRICS)}", 2)
        if name.startswith("psds") and not has_meta:
            raise _fail(f"{name} needs file durations: pass --meta META.tsv", 2)
    return list(dict.fromkeys(names))


def _fmt(value: float, pct: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if pct:
        return f"{100 * value:.2f}"
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}"


_COLUMNS: dict[str, list[tuple[str, str, bool]]] = {
    "intersection": [("F1", "f1", True), ("P", "precision", True), ("R", "recall", True), ("Nref", "n_ref", False),
                     ("TP", "n_tp", False), ("FP", "n_fp", False)],
    "event": [("F1", "f1", True), ("P", "precision", True), ("R", "recall", True), ("ER", "error_rate", False),
              ("Nref", "n_ref", False), ("Nsys", "n_sys", False)],
    "map": [("AP", "ap", True), ("positives", "n_pos", False)],
}
_COLUMNS["segment"] = _COLUMNS["event"]


def _title(name: str, result: MetricResult) -> str:
    params = ", ".join(f"{k} {v}" for k, v in result.params.items() if k != "n_operating_points")
    return f"{name} ({params})" if params else name


def _print_tables(results: dict[str, MetricResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name, result in results.items():
        if name.startswith("psds"):
            table = Table(title=_title(name, result), title_justify="left")
            table.add_column("class")
            table.add_column("AUC (class ROC)", justify="right")
            for label, figures in result.classes.items():
                table.add_row(plain(label), _fmt(figures["auc"], False))
            table.add_section()
            n_ops = result.params.get("n_operating_points")
            table.add_row(f"PSDS ({n_ops} operating point{'s' * (n_ops != 1)})", f"{result.overall['psds']:.4f}",
                          style="bold")
            console.print(table)
            continue
        columns = _COLUMNS[name]
        table = Table(title=_title(name, result), title_justify="left")
        table.add_column("class")
        for header, _, _ in columns:
            table.add_column(header, justify="right")
        for label, figures in result.classes.items():
            table.add_row(plain(label), *(_fmt(figures.get(key, float("nan")), pct) for _, key, pct in columns))
        table.add_section()
        for suffix in ("macro", "micro"):
            if f"f1_{suffix}" in result.overall or (name == "map" and suffix == "macro"):
                row = []
                for _, key, pct in columns:
                    value = result.overall.get(f"{key}_{suffix}")
                    if name == "map" and key == "ap":
                        value = result.overall["map"]
                    if value is None and suffix == "micro" and not pct:
                        value = result.overall.get(key)  # counts and the overall error rate
                    row.append(_fmt(float("nan") if value is None else value, pct))
                table.add_row("mAP" if name == "map" else suffix, *row, style="bold")
        console.print(table)
        left_out = result.left_out_of_macro()
        if left_out and "f1_macro" in result.overall:
            kept = len(result.classes) - len(left_out)
            console.print(plain(f"macro: the mean over {kept} of {len(result.classes)} classes; left out (F1 "
                                f"undefined: no reference events, or no detections): {', '.join(left_out)}"))


def eval_command(
    pred: Path = typer.Argument(..., help="Predictions: DCASE TSV, CSV or `streamdet file` JSONL; a directory of "
                                          "such files is a set of operating points (for PSDS)."),
    gt: Path = typer.Argument(..., help="Ground truth, DCASE TSV (filename, onset, offset, event_label)."),
    meta: Path | None = typer.Option(None, "--meta", help="Durations TSV (filename, duration); restricts "
                                                                "the evaluated files; needed by psds1/psds2."),
    metric: list[str] | None = typer.Option(None, "--metric", help="intersection, event, segment, map, psds1, psds2 "
                                                                   "(repeat or comma-separate). "
                                                                   "Default: intersection,event,segment."),
    output_format: str = typer.Option("table", "--format", "-f", help="table or json."),
    dtc: float = typer.Option(0.5, help="Intersection F1: detection tolerance criterion."),
    gtc: float = typer.Option(0.5, help="Intersection F1: ground-truth intersection criterion."),
    cttc: float = typer.Option(0.3, help="Intersection F1: cross-trigger tolerance criterion."),
    collar: float = typer.Option(0.2, help="Event-based: onset collar (and minimum offset collar), seconds."),
    collar_length: float = typer.Option(0.2, help="Event-based: offset collar as a fraction of the event length."),
    segment: float = typer.Option(1.0, help="Segment-based: segment length, seconds."),
) -> None:
    """Score predictions against ground truth: intersection F1 (psds_eval), event- and segment-based
    (sed_eval), clip mAP, PSDS1/PSDS2. Exit 0 on success, 1 on a malformed input file, 2 on usage errors."""
    from ..metrics import (
        EvalInputError,
        evaluate,
        labels_of,
        read_durations,
        read_events,
        rename_files,
        unscored_predictions,
    )

    if output_format not in ("table", "json"):
        raise _fail(f"--format must be table or json, not {output_format!r}", 2)
    for name, value in (("--dtc", dtc), ("--gtc", gtc), ("--cttc", cttc)):
        if not 0.0 <= value <= 1.0:
            raise _fail(f"{name} must be between 0 and 1, got {value}", 2)
    if collar <= 0 or segment <= 0 or not 0.0 <= collar_length <= 1.0:
        raise _fail("--collar and --segment must be > 0 and --collar-length within [0, 1]", 2)
    pred_paths = _prediction_paths(pred)
    for path in (gt, meta):
        if path is not None and not path.is_file():
            raise _fail(f"{path}: no such file", 2)
    names = _metric_names(metric, meta is not None)
    try:
        ground_truth = read_events(gt)
        durations = read_durations(meta) if meta is not None else None
        known = set(ground_truth) | set(durations or ())
        tables = [rename_files(read_events(p), known) for p in pred_paths]
    except EvalInputError as exc:
        raise _fail(str(exc), 1) from None
    unscored = unscored_predictions(tables[0], ground_truth)
    if unscored:
        labels = sorted({ev.label for ev in unscored})
        shown = "; ".join(f"{ev.label} {ev.onset:g}-{ev.offset:g} s in {ev.stream}" for ev in unscored[:MAX_SHOWN])
        more = f"; and {len(unscored) - MAX_SHOWN} more" if len(unscored) > MAX_SHOWN else ""
        warn(f"{len(unscored)} prediction(s) of labels not in the ground truth ({', '.join(labels)}) "
             f"are not scored by any metric: {shown}{more}")
    others = sorted({label for t in tables[1:] for label in labels_of(t)} - set(labels_of(ground_truth)))
    if others:  # further operating points (PSDS) with labels the first one does not predict
        warn(f"operating points predict labels not in the ground truth, not scored: {others}")
    if durations is not None:
        outside = sorted({n for t in tables for n in t} - set(durations))
        if outside:
            warn(f"{len(outside)} predicted file(s) not in {meta} are ignored, e.g. {outside[0]}")
    try:
        results = evaluate(tables, ground_truth, durations, names, dtc=dtc, gtc=gtc, cttc=cttc, t_collar=collar,
                           percentage_of_length=collar_length, time_resolution=segment)
    except ValueError as exc:
        raise _fail(str(exc), 1) from None
    if output_format == "json":
        payload: dict[str, Any] = {"predictions": [str(p) for p in pred_paths], "ground_truth": str(gt),
                                   "meta": None if meta is None else str(meta),
                                   "unscored_predictions": [e.to_dict() for e in unscored],
                                   "metrics": {n: r.to_dict() for n, r in results.items()}}
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_tables(results)
