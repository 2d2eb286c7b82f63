"""The metadata contract of a streamdet ONNX model (docs/DESIGN.md §2).

The exporter writes these fields into the ONNX ``metadata_props``; the runtime reads and
validates them before it runs anything. Every field is a string; structured fields are JSON.
:func:`validate_model` checks a whole model (metadata and graph inputs/outputs) and is the one check the
session and ``streamdet models show`` both use.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .postprocess import MAX_SECONDS, SECONDS_SETTINGS, PostProcessing

FORMAT_VERSION = "1"
ACTIVATIONS = ("sigmoid", "softmax")
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "waveform"
OUTPUT_NAMES = ("framewise", "clipwise")
POSTPROCESS_KEYS = SECONDS_SETTINGS  # per-class seconds in the optional ``postprocess`` field
# Limits: past them a field is a mistake or an attack, and would overflow the engine's arithmetic or memory.
MAX_SAMPLE_RATE = 1_000_000  # Hz
MAX_WINDOW_SAMPLES = 1 << 24  # 64 MiB of float32 per window (17 minutes at 16 kHz)
MAX_POSTPROCESS_SECONDS = MAX_SECONDS  # min_duration / min_gap: one day (the limit of every PostProcessing)
MAX_LABELS = 1 << 16
MAX_NAME_CHARS = 200  # a label or the model type: one short line
REQUIRED_FIELDS = (
    "streamdet_format",
    "model_type",
    "labels",
    "sample_rate",
    "window_samples",
    "step_seconds",
    "output_activation",
    "precision",
    "frontend",
    "provenance",
)


class ModelMetadataError(ValueError):
    """A model's metadata is missing a field or contradicts itself or the graph's shapes."""


@dataclass(frozen=True)
class ModelMetadata:
    """Typed view of the ``metadata_props`` every streamdet ONNX model carries."""

    model_type: str
    labels: tuple[str, ...]
    sample_rate: int
    window_samples: int
    step_seconds: float
    output_activation: str = "sigmoid"
    precision: str = "fp32"
    frontend: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, tuple[float, float]] | None = None
    postprocess: Mapping[str, Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        self.validate()

    @property
    def window_seconds(self) -> float:
        """Length of one input window in seconds."""
        return self.window_samples / self.sample_rate

    @property
    def steps_per_window(self) -> int:
        """Number of framewise steps in one window (rounded; checked to be integral)."""
        return round(self.window_seconds / self.step_seconds)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.labels)

    def validate(self) -> None:
        """Check that the fields are consistent with each other; raise ModelMetadataError naming the field."""
        _check_name("model_type", self.model_type)
        if not self.labels:
            raise ModelMetadataError("labels: must list at least one class")
        if len(self.labels) > MAX_LABELS:
            raise ModelMetadataError(f"labels: {len(self.labels)} classes, more than {MAX_LABELS}")
        for i, label in enumerate(self.labels):
            _check_name(f"labels: label {i + 1}", label)
        if len(set(self.labels)) != len(self.labels):
            raise ModelMetadataError("labels: class names must be unique")
        _check_count("sample_rate", self.sample_rate, MAX_SAMPLE_RATE)
        _check_count("window_samples", self.window_samples, MAX_WINDOW_SAMPLES)
        if not (_is_number(self.step_seconds) and self.step_seconds > 0 and math.isfinite(self.step_seconds)):
            raise ModelMetadataError(f"step_seconds: must be a positive finite number, got {_clip(self.step_seconds)}")
        if self.step_seconds * self.sample_rate < 1 - 1e-6:
            raise ModelMetadataError(f"step_seconds: {self.step_seconds} is shorter than one sample at "
                                     f"{self.sample_rate} Hz")
        if self.step_seconds > self.window_seconds * (1 + 1e-6):
            raise ModelMetadataError(
                f"step_seconds: {self.step_seconds} is longer than the window ({self.window_seconds:.4f} s)"
            )
        ratio = self.window_seconds / self.step_seconds
        if abs(ratio - round(ratio)) > 1e-3:
            raise ModelMetadataError(
                f"step_seconds: the window ({self.window_seconds:.6f} s) is not a whole number of "
                f"steps of {self.step_seconds} s"
            )
        if self.output_activation not in ACTIVATIONS:
            raise ModelMetadataError(
                f"output_activation: expected one of {ACTIVATIONS}, got {_clip(self.output_activation)}"
            )
        if self.precision not in PRECISIONS:
            raise ModelMetadataError(f"precision: expected one of {PRECISIONS}, got {_clip(self.precision)}")
        if self.thresholds is not None:
            for label, pair in self.thresholds.items():
                if label not in self.labels:
                    raise ModelMetadataError(f"thresholds: unknown label {_clip(label)}")
                if len(pair) != 2 or not all(_is_number(v) for v in pair):
                    raise ModelMetadataError(
                        f"thresholds: {_clip(label)} must be [on, off], two numbers, got {_clip(pair)}")
                on, off = pair
                if not (0.0 <= off <= on <= 1.0):
                    raise ModelMetadataError(
                        f"thresholds: {_clip(label)} needs 0 <= off <= on <= 1, got on={on}, off={off}"
                    )
        if self.postprocess is not None:
            for label, values in self.postprocess.items():
                if label not in self.labels:
                    raise ModelMetadataError(f"postprocess: unknown label {_clip(label)}")
                for key, value in values.items():
                    if key not in POSTPROCESS_KEYS:
                        raise ModelMetadataError(
                            f"postprocess: {_clip(label)} has unknown setting {_clip(key)} "
                            f"(known: {', '.join(POSTPROCESS_KEYS)})"
                        )
                    if not (_is_number(value) and 0 <= value <= MAX_POSTPROCESS_SECONDS):
                        raise ModelMetadataError(f"postprocess: {_clip(label)} {key} must be a number of seconds "
                                                 f"from 0 to {MAX_POSTPROCESS_SECONDS:g}, got {_clip(value)}")
        try:  # the same rules as the user's settings (PostProcessing)
            self.default_postprocessing()
        except ValueError as exc:
            text = str(exc)
            raise ModelMetadataError(text if text.startswith("thresholds:") else f"postprocess: {text}") from None

    def default_postprocessing(self) -> PostProcessing:
        """The post-processing this model asks for: its ``thresholds`` and ``postprocess``, else the defaults."""
        return PostProcessing.resolve(self.labels, model_thresholds=self.thresholds, model_postprocess=self.postprocess)

    def check_shapes(
        self,
        input_shape: Sequence[int | str | None],
        framewise_shape: Sequence[int | str | None],
        clipwise_shape: Sequence[int | str | None],
    ) -> None:
        """Check the graph's declared shapes against the metadata (symbolic dims are accepted as batch)."""
        if len(input_shape) != 2:
            raise ModelMetadataError(f"window_samples: input {INPUT_NAME!r} must be 2-D, got {input_shape}")
        if input_shape[1] != self.window_samples:
            raise ModelMetadataError(
                f"window_samples: metadata says {self.window_samples} but the input "
                f"{INPUT_NAME!r} has {input_shape[1]} samples"
            )
        if len(framewise_shape) != 3:
            raise ModelMetadataError(f"framewise: output must be 3-D [batch, steps, classes], got {framewise_shape}")
        steps = framewise_shape[1]
        if isinstance(steps, int) and steps != self.steps_per_window:
            raise ModelMetadataError(
                f"step_seconds: {self.step_seconds} s gives {self.steps_per_window} steps per window but "
                f"'framewise' has {steps}"
            )
        if len(clipwise_shape) != 2:
            raise ModelMetadataError(f"clipwise: output must be 2-D [batch, classes], got {clipwise_shape}")
        for name, shape in (("framewise", framewise_shape), ("clipwise", clipwise_shape)):
            classes = shape[-1]
            if isinstance(classes, int) and classes != self.num_classes:
                raise ModelMetadataError(
                    f"labels: {self.num_classes} labels but {name!r} has {classes} classes"
                )

    def to_props(self) -> dict[str, str]:
        """Serialise to ONNX ``metadata_props`` (all strings, JSON where structured)."""
        props = {
            "streamdet_format": FORMAT_VERSION,
            "model_type": self.model_type,
            "labels": json.dumps(list(self.labels)),
            "sample_rate": str(int(self.sample_rate)),
            "window_samples": str(int(self.window_samples)),
            "step_seconds": repr(float(self.step_seconds)),
            "output_activation": self.output_activation,
            "precision": self.precision,
            "frontend": json.dumps(dict(self.frontend), sort_keys=True),
            "provenance": json.dumps(dict(self.provenance), sort_keys=True),
        }
        if self.thresholds is not None:
            props["thresholds"] = json.dumps({k: list(v) for k, v in self.thresholds.items()})
        if self.postprocess is not None:
            props["postprocess"] = json.dumps({k: dict(v) for k, v in self.postprocess.items()}, sort_keys=True)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelMetadata:
        """Parse ONNX ``metadata_props``; raise ModelMetadataError naming the missing or bad field."""
        missing = [name for name in REQUIRED_FIELDS if name not in props]
        if missing:
            raise ModelMetadataError(f"{missing[0]}: missing from the model metadata (missing: {', '.join(missing)})")
        if props["streamdet_format"] != FORMAT_VERSION:
            raise ModelMetadataError(
                f"streamdet_format: this streamdet reads format {FORMAT_VERSION!r}, "
                f"the model says {_clip(props['streamdet_format'])}"
            )
        labels = _json_field(props, "labels", list)
        if not all(isinstance(x, str) for x in labels):
            raise ModelMetadataError("labels: must be a JSON list of strings")
        thresholds = None
        if "thresholds" in props:
            raw = _json_field(props, "thresholds", dict)
            for label, pair in raw.items():
                if not (isinstance(pair, list) and len(pair) == 2 and all(_is_number(v) for v in pair)):
                    raise ModelMetadataError(
                        f"thresholds: expected {{label: [on, off]}}, {_clip(label)} has {_clip(pair)}")
            thresholds = {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
        postprocess = None
        if "postprocess" in props:
            raw = _json_field(props, "postprocess", dict)
            if not all(isinstance(v, dict) for v in raw.values()):
                raise ModelMetadataError('postprocess: expected {label: {"min_duration": s, "min_gap": s}}')
            postprocess = {str(k): dict(v) for k, v in raw.items()}
        for name in ("model_type", "output_activation", "precision"):
            if not isinstance(props[name], str):
                raise ModelMetadataError(f"{name}: must be a string, got {type(props[name]).__name__}")
        return cls(
            model_type=props["model_type"],
            labels=tuple(labels),
            sample_rate=_number_field(props, "sample_rate", int),
            window_samples=_number_field(props, "window_samples", int),
            step_seconds=_number_field(props, "step_seconds", float),
            output_activation=props["output_activation"],
            precision=props["precision"],
            frontend=_json_field(props, "frontend", dict),
            provenance=_json_field(props, "provenance", dict),
            thresholds=thresholds,
            postprocess=postprocess,
        )


def _json_field(props: Mapping[str, str], name: str, kind: type) -> Any:
    try:
        value = json.loads(props[name])
    except (ValueError, TypeError) as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise ModelMetadataError(f"{name}: not valid JSON ({_clip(str(exc), 200)})") from None
    except RecursionError:
        raise ModelMetadataError(f"{name}: JSON nested too deeply") from None
    if not isinstance(value, kind):
        raise ModelMetadataError(f"{name}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _number_field(props: Mapping[str, str], name: str, kind: type) -> Any:
    try:
        value = float(props[name])
    except (TypeError, ValueError):
        raise ModelMetadataError(f"{name}: not a number: {_clip(props[name])}") from None
    if not math.isfinite(value):  # "inf", "nan", and "1e400" (which float() reads as inf)
        raise ModelMetadataError(f"{name}: must be a finite number, got {_clip(props[name])}")
    if kind is int:
        if value != int(value):
            raise ModelMetadataError(f"{name}: must be an integer, got {_clip(props[name])}")
        return int(value)
    return value


class TensorSpec(NamedTuple):
    """A graph input or output as ONNX Runtime describes it: name, type (``tensor(float)``) and shape."""

    name: str
    type: str
    shape: Sequence[int | str | None]


def validate_model(
    props: Mapping[str, str], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> ModelMetadata:
    """The model's metadata, checked against itself and the graph: exactly one input ``waveform`` (float32,
    ``[batch, window_samples]``), the outputs ``framewise`` and ``clipwise`` with the metadata's steps and classes,
    a window of whole steps of whole samples. Raises ModelMetadataError naming the field."""
    meta = ModelMetadata.from_props(props)
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        names = [i.name for i in inputs]
        raise ModelMetadataError(f"{INPUT_NAME}: the model must have exactly one input {INPUT_NAME!r}, has {names}")
    by_name = {o.name: o for o in outputs}
    for name in OUTPUT_NAMES:
        if name not in by_name:
            raise ModelMetadataError(f"{name}: output missing (outputs: {sorted(by_name)})")
    if inputs[0].type != "tensor(float)":
        raise ModelMetadataError(f"{INPUT_NAME}: input must be float32, is {inputs[0].type}")
    meta.check_shapes(inputs[0].shape, by_name["framewise"].shape, by_name["clipwise"].shape)
    if meta.window_samples % meta.steps_per_window:
        raise ModelMetadataError(
            f"step_seconds: window_samples {meta.window_samples} does not split into "
            f"{meta.steps_per_window} steps of a whole number of samples"
        )
    return meta


def _clip(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut short: an error message quotes a bad field, never a megabyte of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _is_number(value: Any) -> bool:
    """A real number (Python's or numpy's) that a float holds, not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        float(value)
    except OverflowError:  # an integer past 1.8e308
        return False
    return True


def _check_count(name: str, value: Any, maximum: int) -> None:
    """``value`` must be a whole number from 1 to ``maximum``."""
    if not (_is_number(value) and math.isfinite(value) and value == int(value) and 1 <= value <= maximum):
        raise ModelMetadataError(f"{name}: must be a whole number from 1 to {maximum}, got {_clip(value)}")


def _check_name(what: str, value: Any) -> None:
    """A label or model type: a non-empty string of at most MAX_NAME_CHARS printable characters (no control, format
    or line-break characters) without surrounding spaces: it is printed in tables and written into TSV/CSV files."""
    if not isinstance(value, str) or not value:
        raise ModelMetadataError(f"{what}: must be a non-empty string, got {_clip(value)}")
    if len(value) > MAX_NAME_CHARS:
        raise ModelMetadataError(f"{what}: {len(value)} characters, more than {MAX_NAME_CHARS}: {_clip(value)}")
    if value != value.strip() or not value.isprintable():
        raise ModelMetadataError(f"{what}: {_clip(value)} has control characters, line breaks or surrounding spaces")
