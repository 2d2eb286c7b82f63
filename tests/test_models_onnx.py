"""The models export to ONNX with a dynamic batch, without STFT ops, and ONNX Runtime reproduces PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from streamdet.models import load_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = {
    "htsat": lambda: load_checkpoint(FIXTURES / "htsat" / "tiny_state_dict.pt"),
    "ast": lambda: load_checkpoint(FIXTURES / "ast" / "hf_tiny"),
    "ast_tscam": lambda: load_checkpoint(FIXTURES / "ast" / "hf_tiny", model_type="ast_tscam"),
}
OUTPUTS = ["framewise", "clipwise", "logits", "frame_logits"]  # ModelOutput, in order


def _export(model: torch.nn.Module, path: Path, dynamo: bool) -> None:
    example = (0.1 * torch.randn(2, model.native_window_samples),)  # batch 2: batch 1 would be specialised by export
    kwargs: dict = {"input_names": ["waveform"], "output_names": OUTPUTS}
    if dynamo:
        kwargs["dynamic_shapes"] = {"waveform": {0: torch.export.Dim("batch", min=1, max=64)}}
    else:
        kwargs["dynamic_axes"] = {name: {0: "batch"} for name in ["waveform", *OUTPUTS]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), dynamo=dynamo, **kwargs)


def _check(model: torch.nn.Module, path: Path) -> None:
    graph_ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not graph_ops & {"STFT", "DFT", "Resize", "If", "Loop"}, graph_ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        wave = 0.1 * torch.randn(batch, model.native_window_samples, generator=generator)
        with torch.no_grad():
            expected = model(wave)
        got = session.run(OUTPUTS, {"waveform": wave.numpy()})
        steps = model.steps_for(model.native_window_samples)
        assert got[0].shape == (batch, steps, len(model.labels))
        for name, ours, theirs in zip(OUTPUTS, got, expected, strict=True):
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-5, err_msg=f"{name} batch {batch}")


@pytest.mark.parametrize("name", list(MODELS))
def test_torchscript_export_runs_in_onnxruntime_for_any_batch(tmp_path: Path, name: str) -> None:
    model = MODELS[name]()
    path = tmp_path / f"{name}.onnx"
    _export(model, path, dynamo=False)
    _check(model, path)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_dynamo_export_runs_in_onnxruntime_for_any_batch(tmp_path: Path, name: str) -> None:
    model = MODELS[name]()
    path = tmp_path / f"{name}_dynamo.onnx"
    _export(model, path, dynamo=True)
    _check(model, path)
