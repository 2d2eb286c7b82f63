"""Swin Transformer stages as HTS-AT uses them (Liu et al. 2021; HTS-AT's model/htsat.py).

Every reshape keeps the batch dimension symbolic (``-1``), so exported graphs accept any batch size; the official
``window_reverse`` computes the batch size as a Python int and bakes it into traced graphs.
Parameter and buffer names follow the official code, so official checkpoints load without renaming.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import DropPath, Mlp

__all__ = [
    "PatchEmbed",
    "PatchMerging",
    "SwinBlock",
    "SwinStage",
    "WindowAttention",
    "relative_position_index",
    "shifted_window_mask",
    "window_partition",
    "window_reverse",
]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C] -> [B * nW, window * window, C]`` (windows in row-major order)."""
    _, H, W, C = x.shape
    x = x.reshape(-1, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, window * window, C] -> [B, H, W, C]``."""
    C = windows.shape[-1]
    x = windows.reshape(-1, H // window, W // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def relative_position_index(window: int) -> torch.Tensor:
    """``[window², window²]`` int64 index into the ``(2·window - 1)²`` relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shifted_window_mask(H: int, W: int, window: int, shift: int) -> torch.Tensor:
    """``[nW, window², window²]`` additive mask (0 / -100) of the shifted-window attention."""
    regions = torch.zeros(1, H, W, 1)
    label = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, hs, ws, :] = label
            label += 1
    windows = window_partition(regions, window).squeeze(-1)  # [nW, window²]
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias."""

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.window, self.num_heads = dim, window, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """``[heads, N, N]`` bias gathered from the table."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B * nW, N, C]``; ``mask [nW, N, N]`` or None."""
        _, N, C = x.shape
        qkv = self.qkv(x).reshape(-1, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias().unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.reshape(-1, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape(-1, self.num_heads, N, N)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(-1, N, C)
        return self.proj(x)


class SwinBlock(nn.Module):
    """Pre-norm Swin block: (shifted) window attention + MLP, both residual.

    A block whose resolution is not larger than the window attends over the whole grid without shifting, like the
    official code (HTS-AT's last stage, 8×8 with window 8).
    """

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        num_heads: int,
        window: int = 8,
        shift: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim, self.resolution = dim, resolution
        if min(resolution) <= window:
            window, shift = min(resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*resolution, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.resolution
        C = x.shape[-1]
        shortcut = x
        x = self.norm1(x).reshape(-1, H, W, C)
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        x = self.attn(window_partition(x, self.window), mask=self.attn_mask)
        x = window_reverse(x, self.window, H, W)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x.reshape(-1, H * W, C))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2×2 neighbour concat in the order (0,0), (1,0), (0,1), (1,1) -> LayerNorm(4C) -> Linear(4C, 2C, no bias)."""

    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution, self.dim = resolution, dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.resolution
        C = x.shape[-1]
        x = x.reshape(-1, H, W, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(-1, (H // 2) * (W // 2), 4 * C)))


class SwinStage(nn.Module):
    """``depth`` Swin blocks alternating unshifted / shifted windows, then optional patch merging."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: list[float] | None = None,
        downsample: bool = True,
    ) -> None:
        super().__init__()
        drop_path = drop_path or [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, qkv_bias, dp)
            for i, dp in enumerate(drop_path)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    """Conv2d patchify ``[B, 1, H, W] -> [B, H'·W', D]`` followed by LayerNorm."""

    def __init__(self, patch_size: int, stride: tuple[int, int], dim: int, in_chans: int = 1) -> None:
        super().__init__()
        padding = ((patch_size - stride[0]) // 2, (patch_size - stride[1]) // 2)
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))
