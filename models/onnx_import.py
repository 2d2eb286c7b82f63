"""Rebuild the torch model of a streamdet ONNX file (fp32): ``load_onnx_model("alerts.onnx")``.

The ONNX file holds everything needed: ``model_type``, ``labels`` and the architecture config (in its
``provenance.architecture``) and the weights as graph initializers. The exporter keeps most parameters under their
``model.<name>`` state-dict names, but the tracer rewrites three kinds:

* every ``nn.Linear`` weight becomes an anonymous ``onnx::MatMul_*`` initializer holding the *transposed* weight,
  consumed by the node ``/model/<module path>/MatMul``;
* a tensor equal to another one is stored once; its own name is the output of an ``Identity`` of the other;
* HTS-AT's relative-position bias table is folded into the gathered bias ``[1, heads, N, N]`` added by the node
  ``/model/<attention path>/Add``; every table entry appears in that gather, so the table is recovered exactly
  (and checked: each entry must read the same value wherever it appears).

The rebuilt model is then checked against ONNX Runtime on random and silent input: the probabilities must agree
within :data:`PARITY_TOLERANCE`, or :class:`~streamdet.models.CheckpointError` says by how much.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError
from .registry import build_model

__all__ = ["PARITY_TOLERANCE", "load_onnx_model", "onnx_state_dict"]

PARITY_TOLERANCE = 1e-4
"""Largest absolute difference of probabilities between the rebuilt torch model and ONNX Runtime."""


def load_onnx_model(path: str | Path, verify: bool = True) -> nn.Module:
    """The torch model of a streamdet fp32 ONNX file, in eval mode, with ``source`` describing the file.

    Raises :class:`CheckpointError` naming the file for a missing / non-fp32 / unknown model or a parity failure.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others
        raise CheckpointError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("precision", "fp32") != "fp32":
        raise CheckpointError(f"{path}: a {meta['precision']} model; training starts from fp32 weights "
                              "(export the fp32 model, or pass its checkpoint)")
    try:
        labels = json.loads(meta["labels"])
        arch = dict(json.loads(meta["provenance"])["architecture"])
        model_type = meta["model_type"]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: no streamdet metadata (model_type, labels, provenance.architecture); "
                              "only ONNX files written by streamdet export can be trained further") from None
    arch["num_classes"] = len(labels)
    try:
        model = build_model(model_type, labels=labels, **arch)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild model_type {model_type!r}: {exc}") from None
    state = onnx_state_dict(proto, model)
    for key, value in model.state_dict().items():  # counters the graph has no use for
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise CheckpointError(f"{path}: the graph holds no weights for {len(missing)} parameter(s) of "
                              f"{model_type}, e.g. {', '.join(missing[:3])}")
    model.load_state_dict(state, strict=True)
    model.eval()
    model.source = {"file": path.name, "path": str(path.resolve()), "format": "streamdet_onnx"}
    model.provenance = {"imported_from_onnx": path.name}
    if verify:
        diff = _parity(model, path, int(meta["window_samples"]))
        if diff > PARITY_TOLERANCE:
            raise CheckpointError(f"{path}: the rebuilt torch model differs from the ONNX graph by {diff:.2e} "
                                  f"(tolerance {PARITY_TOLERANCE:g})")
        model.source["parity_max_abs_diff"] = diff
    return model


def onnx_state_dict(proto: Any, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` recovered from the initializers of an exported graph (see the module doc)."""
    from onnx import numpy_helper

    wanted = model.state_dict()
    inits = {i.name: i for i in proto.graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, init in inits.items():
        if name.startswith("model.") and name[len("model."):] in wanted:
            state[name[len("model."):]] = torch.from_numpy(numpy_helper.to_array(init).copy())
    for node in proto.graph.node:  # equal tensors are stored once, the others named by an Identity of it
        out = node.output[0] if node.output else ""
        if node.op_type == "Identity" and node.input[0] in inits and out.startswith("model.") \
                and out[len("model."):] in wanted:
            state[out[len("model."):]] = torch.from_numpy(numpy_helper.to_array(inits[node.input[0]]).copy())
    for node in proto.graph.node:
        module = _module_path(node.name)
        if module is None:
            continue
        for inp in node.input:
            if inp not in inits or inp.startswith("model."):
                continue
            value = numpy_helper.to_array(inits[inp])
            if node.op_type == "MatMul" and f"{module}.weight" in wanted and value.ndim == 2:
                state[f"{module}.weight"] = torch.from_numpy(value.T.copy())
            elif node.op_type == "Add" and f"{module}.relative_position_bias_table" in wanted:
                key = f"{module}.relative_position_bias_table"
                attention = model.get_submodule(module)
                state[key] = _bias_table(value, attention.relative_position_index, wanted[key].shape, key)
    return state


def _module_path(node_name: str) -> str | None:
    """``/model/layers.0/blocks.0/attn/qkv/MatMul`` -> ``layers.0.blocks.0.attn.qkv``."""
    parts = node_name.strip("/").split("/")
    if len(parts) < 3 or parts[0] != "model":
        return None
    return ".".join(parts[1:-1])


def _bias_table(gathered: np.ndarray, index: torch.Tensor, shape: torch.Size, key: str) -> torch.Tensor:
    """Invert ``table[index].reshape(N, N, heads).permute(2, 0, 1)`` for a ``[1, heads, N, N]`` bias."""
    bias = torch.from_numpy(np.array(gathered, dtype=np.float32)).reshape(shape[1], -1).T  # [N*N, heads]
    flat = index.reshape(-1)
    table = torch.zeros(shape)
    table[flat] = bias
    counts = torch.bincount(flat, minlength=shape[0])
    if (counts == 0).any():
        raise CheckpointError(f"{key}: {int((counts == 0).sum())} table entries never reach the graph")
    if not torch.allclose(table[flat], bias, atol=0.0):
        raise CheckpointError(f"{key}: the folded bias is not a gather of one table")
    return table


def _parity(model: nn.Module, path: Path, window_samples: int) -> float:
    """Largest |probability difference| between ``model`` and ONNX Runtime on noise, a tone and silence."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    t = np.arange(window_samples) / float(model.sample_rate)
    x = np.stack([0.1 * rng.standard_normal(window_samples), 0.3 * np.sin(2 * np.pi * 1000 * t),
                  np.zeros(window_samples)]).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outs = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x}), strict=True))
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    return max(float(np.max(np.abs(outs["framewise"] - ref.framewise.numpy()))),
               float(np.max(np.abs(outs["clipwise"] - ref.clipwise.numpy()))))

