"""What an exported model file says about itself, read with ONNX Runtime only (no torch): ``streamdet models``.

:func:`model_info` gathers it in one JSON-ready dict; the model is checked with the same
:func:`~streamdet.model_metadata.validate_model` a :class:`~streamdet.session.ModelSession` runs, so a file it calls
valid is one the Detector loads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .errors import short_error
from .model_metadata import ModelMetadataError, TensorSpec, validate_model
from .session import graph_tensors

__all__ = ["model_info"]


def model_info(path: str | Path) -> dict[str, Any]:
    """Everything ``streamdet models show`` reports about an ONNX model file, as a JSON-ready dict.

    Keys: path, file_bytes, sha256, valid (bool), error (why not, else None), producer, graph, the raw
    ``metadata`` props, the parsed fields (model_type, labels, sample_rate, window_samples, window_seconds,
    step_seconds, steps_per_window, output_activation, precision, thresholds (model's, or the runtime
    defaults marked ``thresholds_source``), postprocess (per-class min_duration / min_gap, empty when the model
    has none), frontend, provenance) and ``inputs``/``outputs`` with shapes.
    Raises OSError / RuntimeError when the file is not a loadable ONNX model.
    """
    import onnxruntime as ort

    path = Path(path)
    data = path.read_bytes()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RuntimeError(f"not a loadable ONNX model ({short_error(exc, line='last')})") from None
    meta = session.get_modelmeta()
    props = dict(meta.custom_metadata_map)

    inputs, outputs = graph_tensors(session.get_inputs()), graph_tensors(session.get_outputs())

    def tensors(items: list[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": t.name, "type": t.type, "shape": [d if isinstance(d, int) else str(d) for d in t.shape]}
                for t in items]

    info: dict[str, Any] = {
        "path": str(path),
        "file_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "valid": False,
        "error": None,
        "producer": meta.producer_name,
        "graph": meta.graph_name,
        "inputs": tensors(inputs),
        "outputs": tensors(outputs),
        "metadata": props,
    }
    try:
        md = validate_model(props, inputs, outputs)  # the check Detector runs: what one accepts, the other does
    except ModelMetadataError as exc:
        info["error"] = str(exc)
        return info
    info.update(
        valid=True,
        model_type=md.model_type,
        labels=list(md.labels),
        sample_rate=md.sample_rate,
        window_samples=md.window_samples,
        window_seconds=md.window_seconds,
        step_seconds=md.step_seconds,
        steps_per_window=md.steps_per_window,
        output_activation=md.output_activation,
        precision=md.precision,
        thresholds={k: list(v) for k, v in md.default_postprocessing().thresholds.items()},
        thresholds_source="model" if md.thresholds else "runtime default",
        postprocess={k: dict(v) for k, v in (md.postprocess or {}).items()},
        frontend=dict(md.frontend),
        provenance=dict(md.provenance),
    )
    return info
