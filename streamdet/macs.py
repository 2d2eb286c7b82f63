"""Multiply-accumulates of an ONNX graph, counted from the shapes of its compute nodes (no torch).

What is counted, per node, at a fixed batch size (1 by default):

- ``MatMul`` / ``MatMulInteger`` / ``QLinearMatMul``: output elements × the shared dimension K;
- ``Gemm``: M × N × K;
- ``Conv`` / ``ConvInteger`` / ``QLinearConv``: output elements × (input channels per group × kernel size);
- ``ConvTranspose``: input elements × (output channels per group × kernel size).

Elementwise work (softmax, GELU, normalisation, the bicubic resize) is not counted, the same convention as
``torch.utils.flop_counter`` in ``benchmarks/models.py``. Nodes inside subgraphs (``If``/``Loop``) are not
visited. The ``onnx`` package is needed (it is not a runtime dependency); without it
:class:`MacCountError` is raised, and callers report the MACs as unknown.

Shapes come from ONNX Runtime's symbolic shape inference when it is importable (it needs ``sympy``), else from
``onnx.shape_inference`` with data propagation; tensors whose shapes stay unknown are read back from one ONNX
Runtime run of the graph with those tensors exposed as outputs.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import short_error

__all__ = ["METHODS", "MacCount", "MacCountError", "count_onnx_macs", "node_macs"]

METHODS = ("auto", "symbolic", "onnx", "run")
Shape = tuple[int, ...]
ShapeOf = Callable[[str], "Shape | None"]

# op type -> (index of the first matrix/data input, index of the second matrix/weight input)
_MATMUL_INPUTS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
COUNTED_OPS = (*_MATMUL_INPUTS, *_CONV_WEIGHT, "Gemm", "ConvTranspose")


class MacCountError(RuntimeError):
    """The MACs of a graph cannot be counted here (``onnx`` missing, or shapes that cannot be resolved)."""


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass at ``batch``; ``by_op`` splits ``total`` by op type."""

    total: int
    batch: int
    method: str
    nodes: int
    by_op: dict[str, int] = field(default_factory=dict)

    @property
    def per_item(self) -> float:
        """MACs per batch item (per window for a streamdet model)."""
        return self.total / self.batch


def count_onnx_macs(model: Any, batch: int = 1, method: str = "auto") -> MacCount:
    """Count the MACs of ``model`` (a path or an ``onnx.ModelProto``) for one run at ``batch`` (a graph whose first
    input has a fixed batch dimension is counted at that batch; :attr:`MacCount.per_item` divides it out).

    ``method``: ``"auto"`` (symbolic inference if available, else onnx's; unresolved tensors read back from an ONNX
    Runtime run), or exactly one of ``"symbolic"``, ``"onnx"``, ``"run"``. Raises :class:`MacCountError`
    when ``onnx`` is not installed or a compute node's shapes stay unknown.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    try:
        import onnx
    except ImportError:
        raise MacCountError("the onnx package is not installed (pip install onnx)") from None
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    proto = onnx.load(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model
    proto, batch = _with_batch(proto, batch)
    nodes = [n for n in proto.graph.node if n.op_type in COUNTED_OPS]
    shapes = _known_shapes(proto)
    used: list[str] = []

    if method in ("auto", "symbolic"):
        inferred = _symbolic_shapes(proto)
        if inferred is not None:
            shapes.update(inferred)
            used.append("symbolic")
        elif method == "symbolic":
            raise MacCountError("symbolic shape inference is not available (needs onnxruntime and sympy)")
    if method == "onnx" or (method == "auto" and not used):
        shapes.update(_onnx_shapes(proto))
        used.append("onnx")

    def missing() -> list[str]:
        names = []
        for node in nodes:
            if node_macs(node, shapes.get) is None:
                names += [n for n in (*node.input, *node.output) if n and shapes.get(n) is None]
        return list(dict.fromkeys(names))

    unresolved = missing()
    if unresolved and method in ("auto", "run"):
        shapes.update(_run_shapes(proto, unresolved))
        used.append("run")
        unresolved = missing()
    if unresolved:
        raise MacCountError(f"shapes of {len(unresolved)} tensors stay unknown (first: {unresolved[0]!r})")

    by_op: dict[str, int] = {}
    for node in nodes:
        by_op[node.op_type] = by_op.get(node.op_type, 0) + int(node_macs(node, shapes.get) or 0)
    return MacCount(sum(by_op.values()), batch, "+".join(used), len(nodes), by_op)


def node_macs(node: Any, shape_of: ShapeOf) -> int | None:
    """MACs of one node given ``shape_of(tensor name)``; 0 for ops that are not counted, None if shapes are unknown."""
    op = node.op_type
    if op in _MATMUL_INPUTS:
        ia, ib = _MATMUL_INPUTS[op]
        return _matmul_macs(shape_of(node.input[ia]), shape_of(node.input[ib]), shape_of(node.output[0]))
    if op == "Gemm":
        a, b = shape_of(node.input[0]), shape_of(node.input[1])
        if a is None or b is None:
            return None
        attrs = _int_attrs(node)
        m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
        n = b[0] if attrs.get("transB", 0) else b[1]
        return m * n * k
    if op in _CONV_WEIGHT:
        w, out = shape_of(node.input[_CONV_WEIGHT[op]]), shape_of(node.output[0])
        if w is None or out is None:
            return None
        return math.prod(out) * math.prod(w[1:])
    if op == "ConvTranspose":
        x, w = shape_of(node.input[0]), shape_of(node.input[1])
        if x is None or w is None:
            return None
        return math.prod(x) * math.prod(w[1:])
    return 0


def _matmul_macs(a: Shape | None, b: Shape | None, out: Shape | None) -> int | None:
    if a is not None and len(a) >= 1:
        k = a[-1]
    elif b is not None and len(b) >= 1:
        k = b[-2] if len(b) >= 2 else b[0]
    else:
        return None
    if out is None:
        if a is None or b is None:
            return None
        a2 = a if len(a) >= 2 else (1, *a)
        b2 = b if len(b) >= 2 else (*b, 1)
        out = (*np.broadcast_shapes(a2[:-2], b2[:-2]), a2[-2], b2[-1])
    return math.prod(out) * k


def _int_attrs(node: Any) -> dict[str, int]:
    return {a.name: int(a.i) for a in node.attribute if a.type == 2}  # AttributeProto.INT


def _with_batch(proto: Any, batch: int) -> tuple[Any, int]:
    """A copy of ``proto`` whose graph inputs have ``batch`` in place of a symbolic first dimension, and the batch
    the count will be for: the first input's fixed first dimension when the graph has one, else ``batch``."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    inits = {i.name for i in copy.graph.initializer}
    actual = None
    for inp in copy.graph.input:
        if inp.name in inits or not inp.type.tensor_type.HasField("shape"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
        if actual is None and dims and len(dims) > 1:
            actual = int(dims[0].dim_value)
    return copy, actual or batch


def _dims(value_info: Any) -> Shape | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = []
    for d in tensor.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def _known_shapes(proto: Any) -> dict[str, Shape | None]:
    """Shapes known without inference: initializers, ``Constant`` nodes and declared inputs/outputs."""
    shapes: dict[str, Shape | None] = {i.name: tuple(int(d) for d in i.dims) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(int(d) for d in attr.t.dims)
    shapes.update(_value_info_shapes([*proto.graph.input, *proto.graph.output], skip=shapes))
    return shapes


def _value_info_shapes(infos: Iterable[Any], skip: dict | None = None) -> dict[str, Shape | None]:
    return {v.name: _dims(v) for v in infos if not skip or v.name not in skip}


def _symbolic_shape_inference() -> Any:
    """ONNX Runtime's ``SymbolicShapeInference`` class, or None (onnxruntime or sympy missing).

    The module is loaded from its file: importing the ``onnxruntime.tools`` package would import torch when torch
    is installed, and the runtime never imports torch.
    """
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None or importlib.util.find_spec("sympy") is None:
        return None
    path = Path(spec.origin).parent / "tools" / "symbolic_shape_infer.py"
    name = "streamdet._ort_symbolic_shape_infer"
    module = sys.modules.get(name)
    if module is None:
        if not path.is_file():
            return None
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            return None
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception:  # an incompatible onnxruntime / sympy / onnx combination
            return None
        sys.modules[name] = module
    return getattr(module, "SymbolicShapeInference", None)


def _symbolic_shapes(proto: Any) -> dict[str, Shape | None] | None:
    SymbolicShapeInference = _symbolic_shape_inference()
    if SymbolicShapeInference is None:
        return None
    try:
        inferred = SymbolicShapeInference.infer_shapes(proto, auto_merge=True)
    except Exception:  # an op it does not know: fall back to onnx's inference
        return None
    if inferred is None:
        return None
    graph = inferred.graph
    return {k: v for k, v in _value_info_shapes([*graph.value_info, *graph.output]).items() if v is not None}


def _onnx_shapes(proto: Any) -> dict[str, Shape | None]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:
        return {}
    graph = inferred.graph
    return {k: v for k, v in _value_info_shapes([*graph.value_info, *graph.output]).items() if v is not None}


def _run_shapes(proto: Any, names: Sequence[str]) -> dict[str, Shape | None]:
    """Shapes of ``names`` read back from one ONNX Runtime run with those tensors exposed as graph outputs."""
    import onnx
    import onnxruntime as ort

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    present = {o.name for o in copy.graph.output}
    inits = {i.name for i in copy.graph.initializer}
    extra = [n for n in names if n not in present and n not in inits]
    copy.graph.output.extend(onnx.ValueInfoProto(name=n) for n in extra)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(copy.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
        feeds = {}
        rng = np.random.default_rng(0)
        for inp in copy.graph.input:
            if inp.name in inits:
                continue
            dims = _dims(inp)
            if dims is None:
                raise MacCountError(f"input {inp.name!r} has a shape that is not fixed")
            dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
            feeds[inp.name] = (0.01 * rng.standard_normal(dims)).astype(dtype)
        wanted = [o.name for o in session.get_outputs()]
        values = session.run(wanted, feeds)
    except MacCountError:
        raise
    except Exception as exc:
        raise MacCountError(f"could not run the graph to read its shapes ({short_error(exc, limit=200)})") from None
    return {name: tuple(int(d) for d in np.shape(v)) for name, v in zip(wanted, values, strict=True)}
