"""AST (Gong et al., Interspeech 2021): a DeiT-style ViT over overlapping 16×16 fbank patches, official architecture.

Pipeline for a waveform ``[B, N]`` at 16 kHz::

    Kaldi fbank [B, 1024, 128] (normalised) -> image [B, 1, 128, 1024] -> Conv2d 16×16 stride (10, 10)
    -> 12 × 101 patch tokens (frequency-major) -> [cls, dist, patches] + pos_embed -> 12 pre-norm ViT blocks
    -> LayerNorm -> (cls + dist) / 2 -> LayerNorm + Linear -> logits [B, C]

:class:`ASTTokenSemantic` replaces the cls/dist head by an HTS-AT-style token-semantic convolution on the patch grid
(kernel = all frequency rows × 3 time columns), giving one logit per patch column (101 steps per window).
Parameter names match the official checkpoint without its ``module.v.`` prefix (``mlp_head.*`` kept).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .frontends import KaldiFbankFrontend
from .htsat import _resolve_labels
from .layers import DropPath, Mlp, ModelOutput, SEDModel

__all__ = ["AST", "ASTConfig", "ASTTokenSemantic", "resize_pos_grid"]


@dataclass
class ASTConfig:
    """Architecture and front-end of an AST model. Defaults are the official AudioSet model (DeiT-B/384)."""

    num_classes: int = 527
    # front-end
    sample_rate: int = 16000
    frame_length: int = 400
    frame_shift: int = 160
    n_fft: int = 512
    n_mels: int = 128
    low_freq: float = 20.0
    high_freq: float = 0.0
    preemphasis: float = 0.97
    target_length: int = 1024
    norm_mean: float = -4.2677393
    norm_std: float = 4.5689974
    # transformer
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    qkv_bias: bool = True
    block_eps: float = 1e-6  # timm ViT LayerNorms (transformers: config.layer_norm_eps everywhere)
    head_eps: float = 1e-5  # official mlp_head LayerNorm
    drop_path_rate: float = 0.0  # training only (the official recipe uses none)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.f_dim < 1 or self.t_dim < 1:
            raise ValueError(f"no patches for n_mels={self.n_mels}, target_length={self.target_length}")

    @property
    def f_dim(self) -> int:
        """Patch rows along frequency (12)."""
        return (self.n_mels - self.patch_size) // self.fstride + 1

    @property
    def t_dim(self) -> int:
        """Patch columns along time (101 for 1024 frames)."""
        return (self.target_length - self.patch_size) // self.tstride + 1

    @property
    def num_patches(self) -> int:
        return self.f_dim * self.t_dim


def resize_pos_grid(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix: int = 2
) -> torch.Tensor:
    """Adapt a ``[1, prefix + F·T, D]`` positional embedding to a new (F, T) patch grid as the official code does.

    Each axis is cut from the middle when it shrinks (``start = old // 2 - new // 2``) and bilinearly interpolated
    (``align_corners=False``) when it grows: time first, then frequency. This is the ImageNet-init rule; for a
    checkpoint trained on AudioSet (12 × 101 grid, frequency unchanged) it equals the official fine-tuning rule
    (time cut from column ``50 - T // 2``).
    """
    (old_f, old_t), (new_f, new_t) = old_grid, new_grid
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = grid.shape[-1]
    if grid.shape[1] != old_f * old_t:
        raise ValueError(f"pos_embed has {grid.shape[1]} patch positions, expected {old_f}×{old_t}")
    grid = grid.transpose(1, 2).reshape(1, dim, old_f, old_t)
    if new_t <= old_t:
        start = old_t // 2 - new_t // 2
        grid = grid[:, :, :, start : start + new_t]
    else:
        grid = F.interpolate(grid, size=(old_f, new_t), mode="bilinear")
    if new_f <= old_f:
        start = old_f // 2 - new_f // 2
        grid = grid[:, :, start : start + new_f, :]
    else:
        grid = F.interpolate(grid, size=(new_f, new_t), mode="bilinear")
    grid = grid.reshape(1, dim, new_f * new_t).transpose(1, 2)
    return torch.cat([prefix, grid], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm naming).

    Uses ``F.scaled_dot_product_attention`` in eager PyTorch (``fused_attn = True``) and the explicit
    ``softmax(q kᵀ · scale) v`` (timm 0.4.5 order) when ``fused_attn`` is False or an ONNX export is running, so
    exported graphs contain only MatMul / Softmax.
    """

    fused_attn = True

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(-1, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if not self.fused_attn or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            x = attn @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(-1, N, C))


class Block(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_dim: int, qkv_bias: bool = True, eps: float = 1e-6, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Overlapping patches: Conv2d(1, D, 16, stride (fstride, tstride)) over ``[B, 1, F, T]``, frequency-major."""

    def __init__(self, patch_size: int, stride: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class AST(SEDModel):
    """Audio Spectrogram Transformer with the official architecture; ``forward(waveform [B, N]) -> ModelOutput``."""

    model_type = "ast"
    output_activation = "sigmoid"
    feature_kind = "normalized"
    no_decay_keywords = ("cls_token", "dist_token", "pos_embed")

    def __init__(self, config: ASTConfig | None = None, labels: list[str] | None = None) -> None:
        super().__init__()
        self.config = config = config or ASTConfig()
        self.labels = _resolve_labels(labels, config.num_classes)
        self.source: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        D = config.embed_dim

        self.frontend = KaldiFbankFrontend(
            sample_rate=config.sample_rate,
            frame_length=config.frame_length,
            frame_shift=config.frame_shift,
            n_fft=config.n_fft,
            n_mels=config.n_mels,
            low_freq=config.low_freq,
            high_freq=config.high_freq,
            preemphasis=config.preemphasis,
            target_length=config.target_length,
            mean=config.norm_mean,
            std=config.norm_std,
        )
        self.patch_embed = PatchEmbed(config.patch_size, (config.fstride, config.tstride), D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 2, D))
        rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(
            Block(D, config.num_heads, config.mlp_dim, config.qkv_bias, config.block_eps, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(D, eps=config.block_eps)
        self._build_head()
        self._init_weights()

    def _build_head(self) -> None:
        self.mlp_head = nn.Sequential(
            nn.LayerNorm(self.config.embed_dim, eps=self.config.head_eps),
            nn.Linear(self.config.embed_dim, self.config.num_classes),
        )

    def _init_weights(self) -> None:
        for tensor in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(tensor, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------------------------------- contract
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def native_window_samples(self) -> int:
        """``target_length`` frame shifts (1024 × 160 = 163840 samples = 10.24 s at 16 kHz)."""
        return self.config.target_length * self.config.frame_shift

    @property
    def num_steps(self) -> int:
        return 1

    def steps_for(self, window_samples: int) -> int:
        """Framewise steps for a fixed window; raises ValueError for windows the model cannot take whole."""
        window_samples = int(window_samples)
        frames = self.frontend.num_frames(window_samples)
        if frames < 1:
            raise ValueError(f"AST needs at least {self.config.frame_length} samples per window, got {window_samples}")
        if frames > self.config.target_length:
            longest = self.config.frame_length + (self.config.target_length - 1) * self.config.frame_shift
            raise ValueError(
                f"a window of {window_samples} samples gives {frames} fbank frames, more than target_length "
                f"{self.config.target_length}: the model would ignore the tail. The longest window is {longest} "
                f"samples; load with target_length=... for longer windows"
            )
        return self.num_steps

    def step_seconds_for(self, window_samples: int) -> float:
        """Duration of one framewise step (the whole window for the official AST)."""
        self.steps_for(window_samples)
        return window_samples / self.sample_rate

    def frontend_config(self) -> dict[str, Any]:
        """JSON-able front-end parameters (Kaldi fbank, padding and normalisation)."""
        return self.frontend.config()

    def architecture(self) -> dict[str, Any]:
        """The config as a JSON-able dict."""
        return asdict(self.config)

    # ------------------------------------------------------------------------------------------------------ forward
    def forward(self, waveform: torch.Tensor) -> ModelOutput:
        """``waveform [B, N]`` at ``sample_rate`` -> ``ModelOutput``."""
        return self.forward_from_features(self.frontend(waveform))

    def forward_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised fbank ``[B, target_length, n_mels]`` -> tokens after the final norm ``[B, 2 + F·T, D]``."""
        if features.shape[1] != self.config.target_length or features.shape[2] != self.config.n_mels:
            raise ValueError(
                f"AST expects features [B, {self.config.target_length}, {self.config.n_mels}], "
                f"got {tuple(features.shape)}"
            )
        x = self.patch_embed(features.unsqueeze(1).transpose(2, 3))
        prefix = torch.cat([self.cls_token, self.dist_token], dim=1).expand(x.shape[0], -1, -1)
        x = torch.cat([prefix, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_from_features(self, features: torch.Tensor, normalized: bool = True) -> ModelOutput:
        """Run the network on the normalised fbank ``[B, target_length, n_mels]`` (``frontend`` output; AST's
        front-end normalises, so ``normalized`` is always true and only there for the common signature)."""
        return self._head(self.forward_tokens(features))

    def _head(self, tokens: torch.Tensor) -> ModelOutput:
        logits = self.mlp_head((tokens[:, 0] + tokens[:, 1]) / 2)
        clipwise = torch.sigmoid(logits)
        return ModelOutput(clipwise.unsqueeze(1), clipwise, logits, logits.unsqueeze(1))


class ASTTokenSemantic(AST):
    """AST backbone with a token-semantic head: frame-level logits from the patch-token grid.

    The patch tokens (after the final norm) are laid out as ``[B, D, F, T]`` (12 × 101) and a
    ``Conv2d(D, C, kernel=(F, 3), padding=(0, 1))`` collapses frequency, like HTS-AT's ``tscam_conv``:
    ``framewise = sigmoid(logits [B, T, C])``, ``clipwise = sigmoid(mean_t logits)``. Column ``t`` sees fbank frames
    ``[t·tstride, t·tstride + 16)`` (plus ±1 column through the kernel).
    """

    model_type = "ast_tscam"

    def _build_head(self) -> None:
        cfg = self.config
        self.tscam_conv = nn.Conv2d(cfg.embed_dim, cfg.num_classes, kernel_size=(cfg.f_dim, 3), padding=(0, 1))

    @property
    def num_steps(self) -> int:
        return self.config.t_dim

    def step_seconds_for(self, window_samples: int) -> float:
        """One step per patch column: ``tstride`` frame shifts (0.1 s)."""
        self.steps_for(window_samples)
        return self.config.tstride * self.config.frame_shift / self.sample_rate

    def _head(self, tokens: torch.Tensor) -> ModelOutput:
        cfg = self.config
        grid = tokens[:, 2:].transpose(1, 2).reshape(-1, cfg.embed_dim, cfg.f_dim, cfg.t_dim)
        frame_logits = self.tscam_conv(grid).flatten(2).transpose(1, 2)  # [B, T, C]
        clip_logits = frame_logits.mean(dim=1)
        return ModelOutput(torch.sigmoid(frame_logits), torch.sigmoid(clip_logits), clip_logits, frame_logits)
