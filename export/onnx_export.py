"""``to_onnx``: a checkpoint or model in, one verified, self-contained streamdet ONNX file out."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from streamdet.models import contract_gaps
from torch import nn

from streamdet.model_metadata import PRECISIONS, ModelMetadata, ModelMetadataError

from .errors import ExportError
from .graph import WindowPlan, declared_shapes, export_graph, graph_shapes, plan_window
from .precision import to_fp16, to_int8
from .verify import Verification, compare_events, compare_with_torch, torch_reference

FP32_TOLERANCE = 1e-4
"""Largest absolute difference of probabilities an fp32 export may show against PyTorch."""
FORBIDDEN_OPS = ("STFT", "DFT")
"""Ops an exported graph must not contain: not every execution provider runs them."""


@dataclass
class ExportReport:
    """What :func:`to_onnx` wrote and measured."""

    path: Path
    model_type: str
    precision: str
    batch: str
    window_samples: int
    sample_rate: int
    steps: int
    step_seconds: float
    labels: list[str]
    bytes: int
    sha256: str
    seconds: float
    verification: Verification | None = None
    fp32_verification: Verification | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "path": str(self.path),
            "model_type": self.model_type,
            "precision": self.precision,
            "batch": self.batch,
            "window_samples": self.window_samples,
            "window_seconds": self.window_samples / self.sample_rate,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "step_seconds": self.step_seconds,
            "classes": len(self.labels),
            "bytes": self.bytes,
            "sha256": self.sha256,
            "seconds": round(self.seconds, 2),
            "verification": self.verification.to_dict() if self.verification else None,
            "fp32_verification": self.fp32_verification.to_dict() if self.fp32_verification else None,
        }


def to_onnx(
    model: nn.Module | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    window_seconds: float | None = None,
    batch: str | int = "dynamic",
    precision: str = "fp32",
    labels: Sequence[str] | None = None,
    thresholds: Mapping[str, Sequence[float]] | None = None,
    postprocess: Mapping[str, Mapping[str, float]] | None = None,
    provenance: Mapping[str, Any] | None = None,
    verify: bool = True,
    opset: int = 17,
) -> ExportReport:
    """Export ``model`` (a streamdet model, or a checkpoint that :func:`streamdet.models.load_checkpoint` reads).

    The graph takes ``waveform [batch, window_samples]`` (front-end inside, no STFT op) and returns ``framewise``
    and ``clipwise`` probabilities, with every metadata field of the model contract. ``window_seconds``: the fixed
    window (default: the model's native one). ``batch``: ``"dynamic"`` or ``1``. ``precision``: ``fp32``, ``fp16``
    (front-end kept in fp32) or ``int8`` (dynamic per-channel MatMul weights). ``labels``: rename the classes.
    ``thresholds``: per-class ``[on, off]`` stored as the model's defaults; ``postprocess``: per-class
    ``{"min_duration": s, "min_gap": s}`` defaults, likewise. ``provenance``: extra entries (recipe,
    figures) merged over what is known of the source.

    With ``verify`` (default) ONNX Runtime is compared with PyTorch on random and structured inputs: an fp32 graph
    must agree within :data:`FP32_TOLERANCE` or :class:`ExportError` is raised with the measured figure (and nothing
    is written). fp16 / int8 report their deviation and whether their events on a test scene match fp32's.
    """
    started = time.perf_counter()
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if batch not in ("dynamic", 1, "1"):
        raise ExportError(f"batch must be 'dynamic' or 1, got {batch!r}")
    dynamic_batch = batch == "dynamic"
    out = Path(path)
    _check_output_path(out)
    model = _as_model(model)
    plan = plan_window(model, window_seconds)
    names = _resolve_labels(model, labels)
    metadata = _metadata(model, plan, names, precision, thresholds, provenance, postprocess)

    with tempfile.TemporaryDirectory(prefix="streamdet-export-") as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        export_graph(model, fp32_path, plan, dynamic_batch=dynamic_batch, opset=opset)
        _write_metadata(fp32_path, metadata.to_props() | {"precision": "fp32"})
        fp32_check = None
        reference = torch_reference(model, plan, dynamic_batch) if verify else None
        if verify:
            fp32_check = compare_with_torch(fp32_path, model, plan, dynamic_batch, reference)
            if not fp32_check.max_abs_diff <= FP32_TOLERANCE:
                raise ExportError(
                    f"verification failed: ONNX Runtime differs from PyTorch by {fp32_check.max_abs_diff:.3g} "
                    f"(framewise {fp32_check.framewise_max_abs_diff:.3g}, clipwise "
                    f"{fp32_check.clipwise_max_abs_diff:.3g}) on probabilities; the limit is {FP32_TOLERANCE:g}"
                )
        final_tmp = fp32_path
        check = fp32_check
        if precision != "fp32":
            final_tmp = Path(tmp) / f"{precision}.onnx"
            (to_fp16 if precision == "fp16" else to_int8)(fp32_path, final_tmp)
            _write_metadata(final_tmp, metadata.to_props())
            if verify:
                check = compare_with_torch(final_tmp, model, plan, dynamic_batch, reference)
                check.events_match, check.events = compare_events(fp32_path, final_tmp, plan)
        _check_graph(final_tmp, graph_shapes(plan, len(names), dynamic_batch))
        _place(final_tmp, out)

    data = out.read_bytes()
    return ExportReport(
        path=out,
        model_type=model.model_type,
        precision=precision,
        batch="dynamic" if dynamic_batch else "1",
        window_samples=plan.window_samples,
        sample_rate=plan.sample_rate,
        steps=plan.steps,
        step_seconds=plan.step_seconds,
        labels=list(names),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        seconds=time.perf_counter() - started,
        verification=check,
        fp32_verification=fp32_check if precision != "fp32" else None,
        metadata=metadata.to_props(),
    )


# ------------------------------------------------------------------------------------------------------- inputs
def _as_model(model: nn.Module | str | os.PathLike[str]) -> nn.Module:
    if isinstance(model, nn.Module):
        module = model
    else:
        from streamdet.models import load_checkpoint

        module = load_checkpoint(model)
    missing = contract_gaps(module)  # the model contract, streamdet.models.StreamdetModel
    if missing:
        raise ExportError(f"to_onnx needs a streamdet model (HTSAT, AST, ASTTokenSemantic); "
                          f"{type(module).__name__} has no {missing[0]!r}")
    return module.float().eval()


def _check_output_path(out: Path) -> None:
    if out.is_dir():
        raise ExportError(f"cannot write {out}: it is a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"cannot write {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ExportError(f"cannot write {out}: permission denied")


def _resolve_labels(model: nn.Module, labels: Sequence[str] | None) -> list[str]:
    classes = len(model.labels)
    if labels is None:
        return list(model.labels)
    names = [str(x) for x in labels]
    if len(names) != classes:
        raise ExportError(f"{len(names)} labels given but the model has {classes} classes")
    if len(set(names)) != len(names):
        raise ExportError("labels must be unique")
    return names


def read_labels_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a file: a JSON list, an AudioSet-style CSV (``index,mid,display_name``) or one per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot read labels file {path}: {exc}") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            names = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ExportError(f"labels file {path}: not valid JSON ({exc})") from None
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise ExportError(f"labels file {path}: expected a JSON list of strings")
        return names
    rows = list(csv.reader(stripped.splitlines()))
    if rows and [c.strip() for c in rows[0][:3]] == ["index", "mid", "display_name"]:
        return [row[2] for row in rows[1:] if len(row) >= 3]
    names = [line.strip() for line in stripped.splitlines() if line.strip()]
    if not names:
        raise ExportError(f"labels file {path} is empty")
    return names


def _metadata(
    model: nn.Module,
    plan: WindowPlan,
    labels: list[str],
    precision: str,
    thresholds: Mapping[str, Sequence[float]] | None,
    provenance: Mapping[str, Any] | None,
    postprocess: Mapping[str, Mapping[str, float]] | None = None,
) -> ModelMetadata:
    source = dict(getattr(model, "source", {}) or {})
    source.pop("path", None)  # a local absolute path says nothing to whoever receives the file
    info: dict[str, Any] = {
        "source": source or None,
        "model_provenance": dict(getattr(model, "provenance", {}) or {}) or None,
        "architecture": model.architecture(),
        "exported": {
            "streamdet": _streamdet_version(),
            "torch": torch.__version__.split("+")[0],
            "onnx": onnx.__version__,
            "onnxruntime": _onnxruntime_version(),
            "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    info = {k: v for k, v in info.items() if v is not None}
    info.update(dict(provenance or {}))
    thr = None
    if thresholds is not None:
        try:
            thr = {str(k): (float(v[0]), float(v[1])) for k, v in thresholds.items()}
        except (TypeError, ValueError, IndexError) as exc:
            raise ExportError(f"thresholds must map labels to [on, off]: {exc}") from None
    try:
        return ModelMetadata(
            model_type=model.model_type,
            labels=tuple(labels),
            sample_rate=plan.sample_rate,
            window_samples=plan.window_samples,
            step_seconds=plan.step_seconds,
            output_activation=getattr(model, "output_activation", "sigmoid"),
            precision=precision,
            frontend=model.frontend_config(),
            provenance=json.loads(json.dumps(info, default=str)),
            thresholds=thr,
            postprocess=None if postprocess is None else {str(k): dict(v) for k, v in postprocess.items()},
        )
    except ModelMetadataError as exc:
        raise ExportError(str(exc)) from None


def _streamdet_version() -> str:
    from streamdet import __version__

    return __version__


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


# ------------------------------------------------------------------------------------------------------ outputs
def _write_metadata(path: Path, props: Mapping[str, str]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "streamdet"
    model.producer_version = _streamdet_version()
    onnx.save(model, str(path))


def _check_graph(path: Path, shapes: Mapping[str, list[int | str]]) -> None:
    """The final graph is self-contained, has no STFT / DFT op and declares the contract's shapes."""
    model = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ExportError(f"the exported graph keeps {len(external)} tensors in an external data file")
    ops = sorted({node.op_type for node in model.graph.node} & set(FORBIDDEN_OPS))
    if ops:
        raise ExportError(f"the exported graph contains {', '.join(ops)} nodes, which not every provider runs")
    declared = declared_shapes(model)
    wrong = {name: declared.get(name) for name, shape in shapes.items() if declared.get(name) != list(shape)}
    if wrong:
        raise ExportError(f"the exported graph declares the shapes {wrong}; expected {dict(shapes)}")


def _place(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary file next to it, so ``dst`` is either complete or untouched."""
    partial = dst.with_name(f".{dst.name}.partial")
    try:
        shutil.copyfile(src, partial)
        os.replace(partial, dst)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ExportError(f"cannot write {dst}: {exc.strerror or exc}") from None
