"""Batch augmentation on front-end features: random gain, mixup and SpecAugment (all torch, seeded).

HTS-AT's recipe mixes log-mels after ``bn0`` and applies SpecAugment (time masks of width up to 64 frames x2,
frequency masks of width up to 8 bins x2, for a 1024 x 64 log-mel). Here:

* :func:`random_gain` shifts a dB log-mel by a random gain per example (level invariance), before ``bn0``.
* :func:`mixup` mixes pairs of examples. ``mode="power"`` (default for dB log-mels) adds the two spectrograms in
  the power domain, ``10 log10(l 10^(a/10) + (1-l) 10^(b/10))``, which is what mixing the two waveforms at those
  gains gives (up to phase cross terms): both scenes are audible, so the targets are the union (element-wise
  max). ``mode="linear"`` is the paper's convex combination of the (normalised) features; the targets are
  then also mixed convexly unless ``union=True``.
* :func:`spec_augment` zeroes random time and frequency bands of the *normalised* features (after ``bn0``,
  where 0 is the per-bin mean); :func:`scaled_specaugment` scales the paper's widths to another geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MixupResult", "SpecAugment", "mixup", "random_gain", "scaled_specaugment", "spec_augment"]


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator).to(device) * (hi - lo) + lo


def random_gain(
    x: torch.Tensor, db_range: tuple[float, float], generator: torch.Generator | None = None, floor: float = -100.0
) -> torch.Tensor:
    """Add a random gain in dB per example to a dB log-mel ``[B, T, F]`` (frames at the ``floor`` stay there,
    so digital silence stays silent)."""
    if db_range[0] == db_range[1] == 0.0:
        return x
    g = _uniform(x.shape[0], db_range[0], db_range[1], generator, x.device).view(-1, 1, 1)
    return torch.where(x > floor + 1e-3, torch.clamp(x + g, min=floor), x)


@dataclass
class MixupResult:
    x: torch.Tensor
    clip: torch.Tensor
    frame: torch.Tensor
    strong: torch.Tensor
    mixed: torch.Tensor  # [B] bool, which examples were mixed


def mixup(
    x: torch.Tensor,
    clip: torch.Tensor,
    frame: torch.Tensor,
    strong: torch.Tensor,
    prob: float,
    lam_range: tuple[float, float] = (0.3, 0.7),
    mode: str = "power",
    union: bool = True,
    generator: torch.Generator | None = None,
) -> MixupResult:
    """Mix each example with probability ``prob`` with another example of the batch (a random permutation).

    ``lam`` is drawn uniformly from ``lam_range`` per example. A mixed example is strong only when both parts
    are strong (frame targets of a weak part are unknown).
    """
    B = x.shape[0]
    if prob <= 0 or B < 2:
        return MixupResult(x, clip, frame, strong, torch.zeros(B, dtype=torch.bool, device=x.device))
    perm = torch.randperm(B, generator=generator).to(x.device)
    mixed = (torch.rand(B, generator=generator) < prob).to(x.device) & (perm != torch.arange(B, device=x.device))
    lam = _uniform(B, lam_range[0], lam_range[1], generator, x.device)
    lam = torch.where(mixed, lam, torch.ones_like(lam))
    lx = lam.view(-1, *([1] * (x.dim() - 1)))
    if mode == "power":
        ln10 = 2.302585092994046
        a = x * (ln10 / 10) + torch.log(lx)
        b = x[perm] * (ln10 / 10) + torch.log1p(-lx.clamp(max=1 - 1e-6))
        xm = torch.logaddexp(a, b) * (10 / ln10)
        xm = torch.where(mixed.view(-1, *([1] * (x.dim() - 1))), xm, x)
    elif mode == "linear":
        xm = lx * x + (1 - lx) * x[perm]
    else:
        raise ValueError(f"mixup mode must be 'power' or 'linear', got {mode!r}")
    m1 = mixed.view(-1, 1)
    if union:
        clip_m = torch.where(m1, torch.maximum(clip, clip[perm]), clip)
        frame_m = torch.where(m1.view(-1, 1, 1), torch.maximum(frame, frame[perm]), frame)
    else:
        lc = lam.view(-1, 1)
        clip_m = lc * clip + (1 - lc) * clip[perm]
        frame_m = lc.view(-1, 1, 1) * frame + (1 - lc.view(-1, 1, 1)) * frame[perm]
    strong_m = torch.where(mixed, strong & strong[perm], strong)
    return MixupResult(xm, clip_m, frame_m, strong_m, mixed)


@dataclass(frozen=True)
class SpecAugment:
    """Mask counts and maximum widths (frames / bins)."""

    time_masks: int = 2
    time_width: int = 64
    freq_masks: int = 2
    freq_width: int = 8


def scaled_specaugment(frames: int, bins: int, base: SpecAugment | None = None) -> SpecAugment:
    """The paper's masks (64 of 1024 frames, 8 of 64 bins) scaled to ``frames`` x ``bins``."""
    base = base or SpecAugment()
    return SpecAugment(
        base.time_masks,
        max(1, round(base.time_width * frames / 1024)),
        base.freq_masks,
        max(1, round(base.freq_width * bins / 64)),
    )


def spec_augment(
    x: torch.Tensor, params: SpecAugment, generator: torch.Generator | None = None, fill: float = 0.0
) -> torch.Tensor:
    """Zero (``fill``) up to ``time_masks`` bands of width ``[0, time_width)`` frames and ``freq_masks`` bands of
    width ``[0, freq_width)`` bins in each example of ``x [B, T, F]``."""
    B, T, F = x.shape
    keep = torch.ones(B, T, F, dtype=torch.bool)
    t_idx = torch.arange(T).view(1, T)
    f_idx = torch.arange(F).view(1, F)
    for _ in range(params.time_masks):
        w = torch.randint(0, params.time_width + 1, (B, 1), generator=generator)
        s = (torch.rand(B, 1, generator=generator) * (T - w + 1)).floor().long()
        keep &= ~((t_idx >= s) & (t_idx < s + w)).view(B, T, 1)
    for _ in range(params.freq_masks):
        w = torch.randint(0, params.freq_width + 1, (B, 1), generator=generator)
        s = (torch.rand(B, 1, generator=generator) * (F - w + 1)).floor().long()
        keep &= ~((f_idx >= s) & (f_idx < s + w)).view(B, 1, F)
    keep = keep.to(x.device)
    return torch.where(keep, x, torch.full_like(x, fill))
