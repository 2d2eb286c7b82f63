"""Reduced-precision variants of an exported fp32 graph: fp16 and dynamic int8.

* **fp16**: every node is converted except the front-end (``/model/frontend/*``): the power spectrum of a loud
  window exceeds fp16's range (65504), so the DFT, power, mel projection and log stay in fp32. Input and outputs
  stay float32, so the runtime feeds and reads an fp16 model exactly like an fp32 one.
* **int8**: dynamic quantisation of the MatMul weights, per output channel (``MatMulInteger`` with activations
  quantised on the fly); the front-end's mel projection is left in fp32.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

FRONTEND_SCOPE = "/model/frontend/"


def frontend_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that belong to the front-end (kept in fp32 by every precision)."""
    return [node.name for node in model.graph.node if node.name.startswith(FRONTEND_SCOPE)]


def to_fp16(src: Path, dst: Path) -> None:
    """Write an fp16 copy of the fp32 graph at ``src`` to ``dst`` (front-end, input and outputs in fp32).

    Every float tensor outside the front-end becomes float16: initializers, ``Constant`` nodes, float-typed
    attributes (``Cast`` to float, ``ConstantOfShape``); one ``Cast`` joins the front-end to the network and one per
    output returns float32.
    """
    model = onnx.load(str(src))
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    types.update({v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output)})
    frontend = set(frontend_nodes(model))
    fp32_tensors = {out for node in graph.node if node.name in frontend for out in node.output}
    fp32_tensors |= {inp.name for inp in graph.input}
    fp32_only = {name for node in graph.node if node.name in frontend for name in node.input}
    body_inputs = {name for node in graph.node if node.name not in frontend for name in node.input}
    shared = fp32_only & body_inputs
    float_types = {onnx.TensorProto.FLOAT}

    # initializers used by the network (copied when the front-end also reads them)
    new_inits = []
    renamed: dict[str, str] = {}
    for init in graph.initializer:
        if init.data_type not in float_types or init.name not in body_inputs:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name)
        if init.name in shared:
            half.name = renamed[init.name] = f"{init.name}_fp16"
            new_inits.append(half)
        else:
            init.CopyFrom(half)
    graph.initializer.extend(new_inits)

    nodes = []
    casts: dict[str, str] = {}
    for node in graph.node:
        if node.name in frontend:
            nodes.append(node)
            continue
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
            elif name in fp32_tensors and types.get(name) == onnx.TensorProto.FLOAT:
                if name not in casts:
                    casts[name] = f"{name}_to_fp16"
                    nodes.append(helper.make_node("Cast", [name], [casts[name]], name=f"{name}_cast_fp16",
                                                  to=onnx.TensorProto.FLOAT16))
                node.input[i] = casts[name]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type in float_types:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                attr.i = onnx.TensorProto.FLOAT16
        nodes.append(node)
    for out in graph.output:
        if out.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or out.name in fp32_tensors:
            continue
        inner = f"{out.name}_fp16"
        for node in nodes:
            for i, name in enumerate(node.output):
                if name == out.name:
                    node.output[i] = inner
            for i, name in enumerate(node.input):
                if name == out.name:
                    node.input[i] = inner
        nodes.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_cast_fp32",
                                      to=onnx.TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale float32 shape annotations; ONNX Runtime infers them again
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def to_int8(src: Path, dst: Path) -> None:
    """Write a dynamically quantised copy (int8 MatMul weights, per channel) of the graph at ``src`` to ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    exclude = frontend_nodes(model)
    quiet = _QuietQuantizer()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            staged = Path(tmp) / "model.onnx"
            onnx.save(model, str(staged))
            quantize_dynamic(
                str(staged),
                str(dst),
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
            )
    finally:
        root.removeFilter(quiet)


class _QuietQuantizer(logging.Filter):
    """Drops the quantiser's advice logged on the root logger ("consider to run pre-processing ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record except the quantiser's warnings below ERROR."""
        return not ("onnxruntime" in record.pathname and "quantization" in record.pathname
                    and record.levelno < logging.ERROR)
