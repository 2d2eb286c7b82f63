"""The options every command shares, defined once: one name, one short flag and one meaning each
(docs/DESIGN.md §6).

- ``--model/-m`` the model; ``--device/-d`` the compute device (``auto``, ``cpu``, ``cuda``, ``cuda:N``);
  ``--threads`` CPU threads (no short flag); ``--input/-i`` the audio input of ``listen``.
- The detection options of every command that detects events (``file``, ``listen``, ``serve``): ``--hop``,
  ``--lookahead``, ``--threshold/-t``, ``--thresholds``, ``--median-filter``, ``--min-duration``, ``--min-gap``,
  ``--classes``, ``--label-map`` (:mod:`streamdet.label_map`; the threshold and seconds options then name the new
  labels), ``--threads``: one group, added to a command by :func:`with_detection_options`, checked by
  :func:`detection_settings` (exit 2 naming the option; NaN, inf and values past the limits refused: seconds
  0-86400, median filter 0-10 s, threads 1-4096) into the Detector's keyword arguments; the post-processing ones
  become one :class:`~streamdet.postprocess.PostProcessing` in the Detector.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from ..model_metadata import MAX_POSTPROCESS_SECONDS
from .common import fail, parse_thresholds

__all__ = [
    "COMPUTE_DEVICES",
    "ClassesOption",
    "DeviceOption",
    "HopOption",
    "InputOption",
    "LabelMapOption",
    "LookaheadOption",
    "MedianFilterOption",
    "MinDurationOption",
    "MinGapOption",
    "ModelOption",
    "ThreadsOption",
    "ThresholdOption",
    "ThresholdsOption",
    "check_threads",
    "detection_settings",
    "is_compute_device",
    "with_detection_options",
]

MODEL_HELP = "ONNX model: a path, or the name of a bundled model (see `streamdet models`). Default: the bundled one."
COMPUTE_DEVICES = "auto, cpu, cuda or cuda:N"
MAX_THREADS = 4096  # --threads: ONNX Runtime takes a C int; beyond it a traceback
MAX_MEDIAN_SECONDS = 10.0  # --median-filter: wider windows cost memory in proportion (width x classes per frame)
# --min-duration / --min-gap: at most MAX_POSTPROCESS_SECONDS (one day), the model metadata's limit

ModelOption = Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP, show_default=False)]
DeviceOption = Annotated[str, typer.Option("--device", "-d", help=f"Compute device: {COMPUTE_DEVICES}.")]
ThreadsOption = Annotated[int | None, typer.Option(
    "--threads", help="CPU threads for inference. Default: every core in `file` (no live audio to leave a core "
                      "for), every core but one in `listen` and `bench`.", show_default=False)]
InputOption = Annotated[list[str] | None, typer.Option(
    "--input", "-i", help=r"Audio input: device index or (part of a) name; see `streamdet devices`. Repeatable, "
                          r"each a named stream: \[NAME=]DEVICE. Default: the system's default input.",
    show_default=False)]
HopOption = Annotated[float, typer.Option("--hop", help="Seconds between window evaluations (sets the latency).")]
LookaheadOption = Annotated[float, typer.Option(
    "--lookahead", help="Seconds of later windows averaged into each frame (more accurate, later onsets).")]
ThresholdOption = Annotated[str | None, typer.Option(
    "--threshold", "-t", help="Detection threshold for every class: ON, or ON,OFF (hysteresis). Default: the model's.",
    show_default=False)]
ThresholdsOption = Annotated[Path | None, typer.Option(
    "--thresholds", help='Per-class thresholds, a JSON file {"label": ON or [ON, OFF], ...}; other classes keep '
                         "theirs.", show_default=False)]
MedianFilterOption = Annotated[float, typer.Option(
    "--median-filter", help="Median filter width over the score track, seconds (0: off).")]
MinDurationOption = Annotated[float | None, typer.Option(
    "--min-duration", help="Drop events shorter than this, seconds (an onset is reported once the event has lasted "
                           "this long). Default: the model's per-class value, else 0.", show_default=False)]
ClassesOption = Annotated[str | None, typer.Option(
    "--classes", help="Keep only these labels (comma-separated; of the --label-map when given, else of the model). "
                      "A comma inside a model label (AudioSet's 'Smoke detector, smoke alarm') stays in the name.",
    show_default=False)]
LabelMapOption = Annotated[str | None, typer.Option(
    "--label-map", help='Group the model\'s classes into new labels, each scoring the maximum of its members: a JSON '
                        'or YAML file {"new_label": ["model label", ...] or {"labels": [...], "threshold": ON or '
                        '[ON, OFF], "min_duration": s, "min_gap": s}}, or a built-in map for AudioSet models '
                        "(household, safety). Unset settings of a group come from its members.",
    show_default=False)]
MinGapOption = Annotated[float | None, typer.Option(
    "--min-gap", help="Merge events of a class separated by less than this, seconds. Default: the model's "
                      "per-class value, else 0.", show_default=False)]


def is_compute_device(value: str) -> bool:
    """Whether ``value`` names a compute device (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    text = value.strip().lower()
    return text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())


def detection_settings(
    hop: float,
    lookahead: float,
    threshold: str | None,
    thresholds: Path | None,
    median_filter: float,
    min_duration: float | None,
    min_gap: float | None,
    threads: int | None,
    classes: str | None = None,
    label_map: str | None = None,
) -> dict[str, Any]:
    """The Detector keyword arguments of the detection options, or exit 2 naming the option that is wrong."""
    for name, value, positive in (("--hop", hop, True), ("--lookahead", lookahead, False)):
        if not math.isfinite(value) or (value <= 0 if positive else value < 0):
            fail(f"{name} must be {'positive' if positive else '>= 0'} (and finite), got {value}", 2)
    for name, value, limit in (("--median-filter", median_filter, MAX_MEDIAN_SECONDS),
                               ("--min-duration", min_duration, MAX_POSTPROCESS_SECONDS),
                               ("--min-gap", min_gap, MAX_POSTPROCESS_SECONDS)):
        if value is not None and not 0 <= value <= limit:  # NaN and inf fail too
            fail(f"{name} must be a number of seconds from 0 to {limit:g}, got {value}", 2)
    check_threads(threads)
    if classes is not None and not classes.strip():
        fail("--classes: expected label names separated by commas, got an empty value", 2)
    return {"hop": hop, "lookahead": lookahead, "thresholds": parse_thresholds(threshold, thresholds),
            "median_filter": median_filter, "min_duration": min_duration, "min_gap": min_gap, "threads": threads,
            "classes": classes, "label_map": parse_label_map(label_map)}


def parse_label_map(value: str | None) -> Any:
    """``--label-map``: the :class:`~streamdet.label_map.LabelMap` of a file or built-in name (checked against the
    model when it loads), or exit 2 naming the file and the problem."""
    if value is None:
        return None
    from ..label_map import LabelMapError, load_label_map

    try:
        return load_label_map(value)
    except LabelMapError as exc:
        fail(f"--label-map: {exc}", 2)


def check_threads(threads: int | None) -> None:
    """``--threads``: from 1 to :data:`MAX_THREADS` (or unset), else exit 2."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        fail(f"--threads must be at least 1 and at most {MAX_THREADS}, got {threads}", 2)


DETECTION_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("hop", HopOption, 0.5),
    ("lookahead", LookaheadOption, 0.0),
    ("threshold", ThresholdOption, None),
    ("thresholds", ThresholdsOption, None),
    ("median_filter", MedianFilterOption, 0.0),
    ("min_duration", MinDurationOption, None),
    ("min_gap", MinGapOption, None),
    ("classes", ClassesOption, None),
    ("label_map", LabelMapOption, None),
    ("threads", ThreadsOption, None),
)
"""The detection option group: parameter name, annotated type, default."""


def with_detection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a typer command the detection option group: its signature gains the :data:`DETECTION_OPTIONS` (after
    ``--model``), and it is called with ``settings=`` the checked Detector keyword arguments instead."""
    hints = {k: v for k, v in get_type_hints(command, include_extras=True).items() if k != "settings"}
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in inspect.signature(command).parameters.values() if p.name != "settings"]
    group = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=kind)
             for name, kind, default in DETECTION_OPTIONS]
    at = next((i + 1 for i, p in enumerate(own) if p.name == "model"), len(own))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name, _, _ in DETECTION_OPTIONS}
        return command(settings=detection_settings(**values), **kwargs)

    wrapper.__signature__ = inspect.Signature([*own[:at], *group, *own[at:]])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**hints, **{name: kind for name, kind, _ in DETECTION_OPTIONS}}
    return wrapper
