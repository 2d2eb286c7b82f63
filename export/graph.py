"""PyTorch model -> ONNX graph that follows the streamdet model contract (docs/DESIGN.md §2).

The graph takes ``waveform [batch, window_samples]`` and returns ``framewise [batch, steps, classes]`` and
``clipwise [batch, classes]`` probabilities. The front-end is part of the model (conv-based DFT, no STFT op), so
the graph runs on every ONNX Runtime provider.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from streamdet.errors import short_error

from .errors import ExportError

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("framewise", "clipwise")
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class WindowPlan:
    """The fixed window an export uses and the framewise steps it yields."""

    window_samples: int
    steps: int
    step_seconds: float
    sample_rate: int

    @property
    def window_seconds(self) -> float:
        """Window length in seconds."""
        return self.window_samples / self.sample_rate


def plan_window(model: nn.Module, window_seconds: float | None = None) -> WindowPlan:
    """Choose and check the fixed window for ``model``; raise :class:`ExportError` for one it cannot take.

    Without ``window_seconds`` the model's native window is used (HTS-AT 10 s; AST 10.24 s; the token-semantic AST
    the 10.1 s its 101 steps of 0.1 s cover). The window must be a whole number of framewise steps, each a whole
    number of samples, because the engine tiles windows with steps.
    """
    sample_rate = int(model.sample_rate)
    fixed_step = _fixed_step_seconds(model)
    if window_seconds is None:
        window_samples = int(model.native_window_samples)
        if fixed_step is not None:
            steps = min(model.num_steps, math.floor(window_samples / (fixed_step * sample_rate) + 1e-9))
            window_samples = round(steps * fixed_step * sample_rate)
    else:
        if not (window_seconds > 0 and math.isfinite(window_seconds)):
            raise ExportError(f"window length must be a positive number of seconds, got {window_seconds}")
        window_samples = round(window_seconds * sample_rate)
    try:
        model_steps = model.steps_for(window_samples)
    except ValueError as exc:
        seconds = window_samples / sample_rate
        raise ExportError(f"{model.model_type} cannot take a {seconds:g} s window: {exc}") from None
    if fixed_step is None:  # the window is stretched onto the model's steps (HTS-AT, official AST)
        steps = model_steps
        if window_samples % steps:
            lo = window_samples // steps * steps
            raise ExportError(
                f"a {window_samples / sample_rate:g} s window ({window_samples} samples) is not a whole number of "
                f"samples per step for {steps} framewise steps; nearest windows: {lo / sample_rate:g} s or "
                f"{(lo + steps) / sample_rate:g} s"
            )
        step_seconds = window_samples / steps / sample_rate
    else:  # steps have a fixed length (token-semantic AST): keep the steps the window covers
        step_samples = fixed_step * sample_rate
        covered = window_samples / step_samples
        if abs(covered - round(covered)) > 1e-6 or abs(step_samples - round(step_samples)) > 1e-6:
            raise ExportError(
                f"a {window_samples / sample_rate:g} s window is not a whole number of {fixed_step:g} s steps "
                f"for {model.model_type}"
            )
        steps = round(covered)
        if steps > model_steps:
            raise ExportError(
                f"a {window_samples / sample_rate:g} s window needs {steps} steps; {model.model_type} has {model_steps}"
            )
        step_seconds = fixed_step
    return WindowPlan(window_samples, steps, float(step_seconds), sample_rate)


def _fixed_step_seconds(model: nn.Module) -> float | None:
    """The step length of models whose steps do not stretch with the window (token-semantic AST), else None."""
    if getattr(model, "model_type", None) == "ast_tscam":
        return float(model.step_seconds_for(model.native_window_samples))
    return None


class ContractWrapper(nn.Module):
    """``waveform -> (framewise, clipwise)`` with framewise cut to the steps the window covers."""

    def __init__(self, model: nn.Module, steps: int) -> None:
        super().__init__()
        self.model = model
        self.steps = steps

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(waveform)
        framewise = out.framewise
        if framewise.shape[1] != self.steps:
            framewise = framewise[:, : self.steps]
        return framewise, out.clipwise


def export_graph(
    model: nn.Module,
    path: Path,
    plan: WindowPlan,
    *,
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Trace ``model`` (float32, eval mode) into a single self-contained ONNX file at ``path``.

    Only the batch axis is symbolic (``batch``) and only with ``dynamic_batch``: the window, the framewise steps and
    the classes are written into the graph's input and output shapes as fixed numbers.
    """
    wrapper = ContractWrapper(model, plan.steps).eval()
    # batch 2 so that the tracer does not specialise anything on a batch of 1
    generator = torch.Generator().manual_seed(0)
    example = 0.1 * torch.randn(2 if dynamic_batch else 1, plan.window_samples, generator=generator)
    dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic_batch else None
    with torch.no_grad():
        framewise, clipwise = wrapper(example)
    classes = int(clipwise.shape[-1])
    batch = int(example.shape[0])
    if tuple(framewise.shape) != (batch, plan.steps, classes) or tuple(clipwise.shape) != (batch, classes):
        raise ExportError(
            f"the model returns framewise {tuple(framewise.shape)} and clipwise {tuple(clipwise.shape)} for a batch "
            f"of {batch}; expected [{batch}, {plan.steps}, C] and [{batch}, C]"
        )
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    declare_shapes(proto, graph_shapes(plan, classes, dynamic_batch))
    onnx.save(proto, str(path))


def graph_shapes(plan: WindowPlan, classes: int, dynamic_batch: bool) -> dict[str, list[int | str]]:
    """The declared shape of the input and of each output: only the batch axis may be symbolic."""
    batch: int | str = "batch" if dynamic_batch else 1
    return {
        INPUT_NAME: [batch, plan.window_samples],
        OUTPUT_NAMES[0]: [batch, plan.steps, classes],
        OUTPUT_NAMES[1]: [batch, classes],
    }


def declare_shapes(proto: onnx.ModelProto, shapes: dict[str, list[int | str]]) -> None:
    """Write ``shapes`` into the graph's inputs / outputs, then check them with ONNX shape inference (strict mode).

    The tracer leaves the time and class axes of the outputs as symbolic names; the runtime and other tools read the
    declared shapes, so they must be the real, fixed numbers. Raise :class:`ExportError` on a contradiction.
    """
    values = {v.name: v for v in [*proto.graph.input, *proto.graph.output]}
    missing = sorted(set(shapes) - set(values))
    if missing:
        raise ExportError(f"the exported graph has no {', '.join(missing)}")
    for name, shape in shapes.items():
        dims = values[name].type.tensor_type.shape.dim
        del dims[:]
        for size in shape:
            dim = dims.add()
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"the declared shapes {shapes} contradict the graph: {short_error(exc)}") from None


def declared_shapes(proto: onnx.ModelProto) -> dict[str, list[int | str]]:
    """The shapes a graph declares for its inputs and outputs (fixed sizes as int, symbolic ones by name)."""
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in [*proto.graph.input, *proto.graph.output]
    }
