"""The metadata contract of a streamdet ONNX model (docs/DESIGN.md §2).

The exporter writes these fields into the ONNX ``metadata_props``; the runtime reads and
validates them before it runs anything. Every field is a string; structured fields are JSON.
:func:`validate_model` checks a whole model (metadata and graph inputs/outputs) and is the one check the
session and ``streamdet models show`` both use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .postprocess import SECONDS_SETTINGS, PostProcessing

FORMAT_VERSION = "1"
ACTIVATIONS = ("sigmoid", "softmax")
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "waveform"
OUTPUT_NAMES = ("framewise", "clipwise")
POSTPROCESS_KEYS = SECONDS_SETTINGS  # per-class seconds in the optional ``postprocess`` field
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
        if not self.model_type:
            raise ModelMetadataError("model_type: must be a non-empty string")
        if not self.labels:
            raise ModelMetadataError("labels: must list at least one class")
        if len(set(self.labels)) != len(self.labels):
            raise ModelMetadataError("labels: class names must be unique")
        if self.sample_rate <= 0:
            raise ModelMetadataError(f"sample_rate: must be positive, got {self.sample_rate}")
        if self.window_samples <= 0:
            raise ModelMetadataError(f"window_samples: must be positive, got {self.window_samples}")
        if not (self.step_seconds > 0 and math.isfinite(self.step_seconds)):
            raise ModelMetadataError(f"step_seconds: must be positive, got {self.step_seconds}")
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
                f"output_activation: expected one of {ACTIVATIONS}, got {self.output_activation!r}"
            )
        if self.precision not in PRECISIONS:
            raise ModelMetadataError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        for name, values in (("thresholds", self.thresholds), ("postprocess", self.postprocess)):
            unknown = sorted(set(values or ()) - set(self.labels))
            if unknown:
                raise ModelMetadataError(f"{name}: unknown label {unknown[0]!r}")
        for label, values in (self.postprocess or {}).items():
            for key in values:
                if key not in POSTPROCESS_KEYS:
                    raise ModelMetadataError(
                        f"postprocess: {label!r} has unknown setting {key!r} (known: {', '.join(POSTPROCESS_KEYS)})"
                    )
        try:  # the same rules as the user's settings
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
                f"the model says {props['streamdet_format']!r}"
            )
        labels = _json_field(props, "labels", list)
        if not all(isinstance(x, str) for x in labels):
            raise ModelMetadataError("labels: must be a JSON list of strings")
        thresholds = None
        if "thresholds" in props:
            raw = _json_field(props, "thresholds", dict)
            try:
                thresholds = {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
            except (TypeError, ValueError, IndexError) as exc:
                raise ModelMetadataError(f"thresholds: expected {{label: [on, off]}}: {exc}") from None
        postprocess = None
        if "postprocess" in props:
            raw = _json_field(props, "postprocess", dict)
            if not all(isinstance(v, dict) for v in raw.values()):
                raise ModelMetadataError('postprocess: expected {label: {"min_duration": s, "min_gap": s}}')
            postprocess = {str(k): dict(v) for k, v in raw.items()}
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
    except json.JSONDecodeError as exc:
        raise ModelMetadataError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise ModelMetadataError(f"{name}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _number_field(props: Mapping[str, str], name: str, kind: type) -> Any:
    try:
        value = float(props[name])
    except ValueError:
        raise ModelMetadataError(f"{name}: not a number: {props[name]!r}") from None
    if kind is int:
        if value != int(value):
            raise ModelMetadataError(f"{name}: must be an integer, got {props[name]!r}")
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
