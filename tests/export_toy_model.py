"""A toy streamdet model for the exporter's tests: it exports and verifies in well under a second."""

from __future__ import annotations

import torch
from streamdet.models import ModelOutput
from torch import nn


class ToyModel(nn.Module):
    """The smallest thing ``to_onnx`` exports: 100-sample frames through a linear layer, 8 kHz, 2 classes.

    With ``offset`` its PyTorch forward adds ``offset`` to the logits except while being traced, so the exported
    graph and PyTorch disagree by a known amount (sigmoid'(0) * offset at a zero input).
    """

    model_type = "toy"
    sample_rate = 8000
    native_window_samples = 800
    output_activation = "sigmoid"

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Linear(100, 2)
        with torch.no_grad():
            self.proj.weight.copy_(torch.linspace(-0.05, 0.05, 200).reshape(2, 100))
            self.proj.bias.zero_()
        self.labels = ["beep", "buzz"]
        self.offset = offset

    def steps_for(self, window_samples: int) -> int:
        """One step per 100 samples."""
        if window_samples % 100:
            raise ValueError(f"the toy takes whole 100-sample frames, got {window_samples} samples")
        return window_samples // 100

    def frontend_config(self) -> dict:
        """The (trivial) front-end's parameters."""
        return {"type": "frames", "frame": 100}

    def architecture(self) -> dict:
        """The architecture as a dict."""
        return {"frame": 100, "classes": 2}

    def forward(self, waveform: torch.Tensor) -> ModelOutput:
        """``waveform [B, N]`` -> framewise ``[B, N / 100, 2]``, clipwise (their mean), logits."""
        logits = self.proj(waveform.reshape(waveform.shape[0], -1, 100))
        if self.offset and not torch.jit.is_tracing():
            logits = logits + self.offset
        framewise = torch.sigmoid(logits)
        return ModelOutput(framewise, framewise.mean(dim=1), logits.mean(dim=1))
