"""Building blocks shared by the models: the output tuple, the MLP, and ONNX-friendly resampling helpers."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

__all__ = [
    "CONTRACT_ATTRIBUTES",
    "DropPath",
    "Mlp",
    "ModelOutput",
    "SEDModel",
    "StreamdetModel",
    "bicubic_resize_indices",
    "contract_gaps",
    "resize_time_bicubic",
]


class ModelOutput(NamedTuple):
    """What every streamdet model returns.

    Attributes:
        framewise: ``[B, steps, C]`` probabilities at the model's native time resolution.
        clipwise: ``[B, C]`` probabilities for the whole window (``sigmoid(logits)``).
        logits: ``[B, C]`` clip-level logits (before the sigmoid), for losses with logits.
        frame_logits: ``[B, steps, C]`` frame-level logits (before the sigmoid; a model without a frame head gives
            its clip logits as one step), for the framewise loss. None from models that do not provide them.
    """

    framewise: torch.Tensor
    clipwise: torch.Tensor
    logits: torch.Tensor
    frame_logits: torch.Tensor | None = None


@runtime_checkable
class StreamdetModel(Protocol):
    """The contract a torch module meets to be exported (docs/DESIGN.md §2): ``forward(waveform [B, N]) ->
    ModelOutput`` plus the attributes below. HTS-AT and AST meet it through :class:`SEDModel`; any module with
    these attributes does (the exporter's tests use a toy one)."""

    model_type: str
    sample_rate: int
    labels: list[str]

    @property
    def native_window_samples(self) -> int:
        """The window the model was built for, in samples."""
        ...

    def steps_for(self, window_samples: int) -> int:
        """Framewise steps of a window of ``window_samples`` samples."""
        ...

    def frontend_config(self) -> dict[str, Any]:
        """The front-end's parameters (the ``frontend`` metadata)."""
        ...


CONTRACT_ATTRIBUTES = ("model_type", "sample_rate", "native_window_samples", "steps_for", "labels", "frontend_config")
"""The attributes of :class:`StreamdetModel`, in the order a missing one is reported."""


def contract_gaps(module: object) -> list[str]:
    """The :data:`CONTRACT_ATTRIBUTES` that ``module`` lacks (empty: it meets the export contract)."""
    return [name for name in CONTRACT_ATTRIBUTES if not hasattr(module, name)]


class SEDModel(nn.Module):
    """Base of streamdet's sound-event-detection networks: what the training loop and the registry rely on.

    Subclasses set ``model_type`` (their registry name), ``feature_kind`` (``"db"``: ``forward_from_features``
    takes a dB log-mel before normalisation, so dB-domain augmentation applies; ``"normalized"``: already
    normalised features) and ``no_decay_keywords`` (parameter-name fragments that take no weight decay besides
    every bias and norm), and implement ``forward_from_features(features, normalized=False) -> ModelOutput``
    with ``frame_logits`` filled in.
    """

    model_type: ClassVar[str] = ""
    output_activation: ClassVar[str] = "sigmoid"
    feature_kind: ClassVar[str] = "normalized"
    no_decay_keywords: ClassVar[tuple[str, ...]] = ()

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters that take no weight decay: biases, norms (every 1-d parameter) and those
        matching ``no_decay_keywords`` (position tables, class tokens)."""
        return {name for name, p in self.named_parameters()
                if p.ndim <= 1 or any(key in name for key in self.no_decay_keywords)}


class Mlp(nn.Module):
    """Transformer feed-forward: ``fc1 -> GELU (exact) -> fc2``."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with ``p == 0``)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


def _cubic_weights(t: np.ndarray, a: np.float32) -> list[np.ndarray]:
    """PyTorch's cubic convolution coefficients (A = -0.75) for fractional offsets ``t``, in float32."""
    one = np.float32(1.0)

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + one

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + one), near(t), near(one - t), far(one - t + one)]


def bicubic_resize_indices(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices ``[4, out]`` and weights ``[4, out]`` of ``interpolate(mode="bicubic", align_corners=True)``.

    Computed in float32 the way PyTorch's CPU kernel does (scale ``(in-1)/(out-1)``, border indices clamped), so
    ``sum_j w[j] * x[idx[j]]`` reproduces ``F.interpolate`` along one axis to float32 rounding.
    """
    scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0.0)
    real = scale * np.arange(out_size, dtype=np.float32)
    base = np.clip(np.floor(real), 0, in_size - 1).astype(np.int64)
    t = np.clip(real - base.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
    weights = np.stack(_cubic_weights(t, np.float32(-0.75))).astype(np.float32)
    index = np.stack([np.clip(base - 1 + j, 0, in_size - 1) for j in range(4)])
    return index, weights


def resize_time_bicubic(x: torch.Tensor, out_size: int, dim: int = 1) -> torch.Tensor:
    """Bicubic (align_corners=True) resampling of ``x`` along ``dim`` to ``out_size`` as four gathers and a sum.

    Equivalent to ``F.interpolate(..., mode="bicubic", align_corners=True)`` along one axis, but exports to ONNX
    as Gather/Mul/Add (no Resize op) and does not depend on the batch size.
    """
    in_size = x.shape[dim]
    if in_size == out_size:
        return x
    index, weights = bicubic_resize_indices(int(in_size), out_size)
    shape = [1] * x.dim()
    shape[dim] = out_size
    out = None
    for j in range(4):
        idx = torch.as_tensor(index[j], device=x.device)
        w = torch.as_tensor(weights[j], device=x.device, dtype=x.dtype).reshape(shape)
        term = torch.index_select(x, dim, idx) * w
        out = term if out is None else out + term
    return out
