"""HTS-AT (Chen et al., ICASSP 2022): hierarchical token-semantic audio transformer, official architecture.

Pipeline for a waveform ``[B, N]`` at 32 kHz::

    log-mel [B, T, 64] -> bn0 -> bicubic time stretch to 1024 frames -> fold 4 chunks of 256 frames into a
    256x256 image -> patch embed (4x4) -> 4 Swin stages (+ patch merging) -> LayerNorm -> token-semantic conv
    -> logits [B, 32, C]

Outputs follow the streamdet contract: ``framewise = sigmoid(logits)`` at the native 32 steps per window (no
repetition), ``clipwise = sigmoid(mean_t(logits))``. Parameter names match the official checkpoint (without the
``sed_model.`` prefix); derived tensors (STFT/mel kernels, attention masks, index buffers) are recomputed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .frontends import LogMelFrontend
from .layers import ModelOutput, SEDModel, resize_time_bicubic
from .swin import PatchEmbed, SwinStage

__all__ = ["HTSAT", "HTSATConfig"]


@dataclass
class HTSATConfig:
    """Architecture and front-end of an HTS-AT model. Defaults are the official AudioSet model."""

    num_classes: int = 527
    # front-end
    sample_rate: int = 32000
    clip_samples: int = 320000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    # transformer
    spec_size: int = 256
    patch_size: int = 4
    patch_stride: tuple[int, int] = (4, 4)
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.1  # training only
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes, kept with the checkpoint

    def __post_init__(self) -> None:
        self.patch_stride = tuple(self.patch_stride)
        self.depths = tuple(self.depths)
        self.num_heads = tuple(self.num_heads)
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} differ in length")
        if self.spec_size % self.n_mels:
            raise ValueError(f"spec_size {self.spec_size} must be a multiple of n_mels {self.n_mels}")
        grid = self.spec_size // self.patch_stride[0] // 2 ** (len(self.depths) - 1)
        if grid < 1 or grid % self.freq_ratio:
            raise ValueError(f"final token grid {grid} must be a positive multiple of freq_ratio {self.freq_ratio}")

    @property
    def freq_ratio(self) -> int:
        """How many time chunks are stacked along frequency in the square image (4)."""
        return self.spec_size // self.n_mels

    @property
    def target_frames(self) -> int:
        """Log-mel frames the image holds (1024); shorter inputs are stretched to it."""
        return self.spec_size * self.freq_ratio

    @property
    def num_features(self) -> int:
        """Channels of the last stage (8 × embed_dim)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def final_grid(self) -> tuple[int, int]:
        """Token grid (freq, time) after the last stage (8, 8)."""
        down = 2 ** (len(self.depths) - 1)
        return self.spec_size // self.patch_stride[0] // down, self.spec_size // self.patch_stride[1] // down

    @property
    def num_steps(self) -> int:
        """Framewise steps per window (32)."""
        return self.final_grid[1] * self.freq_ratio


class HTSAT(SEDModel):
    """HTS-AT with the official architecture; ``forward(waveform [B, N]) -> ModelOutput``.

    Built in training mode like any ``nn.Module`` (``load_checkpoint`` returns models in eval mode).
    """

    model_type = "htsat"
    output_activation = "sigmoid"
    feature_kind = "db"
    no_decay_keywords = ("relative_position_bias_table",)

    def __init__(self, config: HTSATConfig | None = None, labels: list[str] | None = None) -> None:
        super().__init__()
        self.config = config = config or HTSATConfig()
        self.labels = _resolve_labels(labels, config.num_classes)
        self.source: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}

        self.frontend = LogMelFrontend(
            config.sample_rate, config.n_fft, config.hop_length, config.n_mels, config.fmin, config.fmax
        )
        self.bn0 = nn.BatchNorm1d(config.n_mels)
        self.patch_embed = PatchEmbed(config.patch_size, config.patch_stride, config.embed_dim)
        grid = (config.spec_size // config.patch_stride[0], config.spec_size // config.patch_stride[1])
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear decay rule
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)):
            first = sum(config.depths[:i])
            self.layers.append(
                SwinStage(
                    dim=config.embed_dim * 2**i,
                    resolution=(grid[0] // 2**i, grid[1] // 2**i),
                    depth=depth,
                    num_heads=heads,
                    window=config.window_size,
                    mlp_ratio=config.mlp_ratio,
                    qkv_bias=config.qkv_bias,
                    drop_path=rates[first : first + depth],
                    downsample=i < len(config.depths) - 1,
                )
            )
        self.norm = nn.LayerNorm(config.num_features)
        freq_bins = config.final_grid[0] // config.freq_ratio
        self.tscam_conv = nn.Conv2d(config.num_features, config.num_classes, kernel_size=(freq_bins, 3), padding=(0, 1))
        self.apply(_init_weights)

    # ----------------------------------------------------------------------------------------------------- contract
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def native_window_samples(self) -> int:
        """The window the model was designed for (10 s at 32 kHz = 320000 samples)."""
        return self.config.clip_samples

    def steps_for(self, window_samples: int) -> int:
        """Framewise steps for a fixed window; raises ValueError for windows the image cannot hold."""
        window_samples = int(window_samples)
        if window_samples <= self.config.n_fft // 2:
            raise ValueError(
                f"HTS-AT needs more than {self.config.n_fft // 2} samples per window (reflect padding), "
                f"got {window_samples}"
            )
        frames = self.frontend.num_frames(window_samples)
        if frames > self.config.target_frames:
            longest = (self.config.target_frames * self.config.hop_length) - 1
            raise ValueError(
                f"a window of {window_samples} samples gives {frames} log-mel frames, more than the "
                f"{self.config.target_frames} frames of HTS-AT's {self.config.spec_size}-pixel square image; "
                f"the longest window is {longest} samples ({longest / self.sample_rate:.4f} s)"
            )
        return self.config.num_steps

    def step_seconds_for(self, window_samples: int) -> float:
        """Duration of one framewise step for a window (the window is stretched, so ``window / steps``)."""
        return window_samples / self.sample_rate / self.steps_for(window_samples)

    def frontend_config(self) -> dict[str, Any]:
        """JSON-able front-end parameters (log-mel; bn0 and the image folding belong to the network)."""
        return self.frontend.config()

    def architecture(self) -> dict[str, Any]:
        """The config as a JSON-able dict."""
        return asdict(self.config)

    # ------------------------------------------------------------------------------------------------------ forward
    def forward(self, waveform: torch.Tensor) -> ModelOutput:
        """``waveform [B, N]`` at ``sample_rate`` -> ``ModelOutput(framewise [B, 32, C], clipwise, logits)``."""
        return self.forward_from_features(self.frontend(waveform))

    def normalize_features(self, features: torch.Tensor) -> torch.Tensor:
        """``bn0`` over the mel bins of a log-mel ``[B, T, n_mels]``."""
        return self.bn0(features.transpose(1, 2)).transpose(1, 2)

    def to_image(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, T, n_mels]`` (T <= 1024) -> ``[B, 1, 256, 256]``: bicubic time stretch, then fold 4 time chunks.

        ``image[k * n_mels + f, t] = stretched[k * 256 + t, f]``.
        """
        frames, n_mels = features.shape[1], features.shape[2]
        target, ratio = self.config.target_frames, self.config.freq_ratio
        if frames > target:
            raise ValueError(f"HTS-AT takes at most {target} log-mel frames per window, got {frames}")
        x = resize_time_bicubic(features, target, dim=1)
        x = x.reshape(-1, ratio, target // ratio, n_mels).permute(0, 1, 3, 2)
        return x.reshape(-1, 1, ratio * n_mels, target // ratio)

    def forward_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """Image ``[B, 1, 256, 256]`` -> final normalised tokens ``[B, 64, num_features]``."""
        x = self.patch_embed(image)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def tscam_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unfold the chunk stacking: tokens ``[B, 64, C]`` -> ``[B, C, 2, 32]`` with time = chunk * 8 + t."""
        channels = tokens.shape[-1]
        sf, st = self.config.final_grid
        ratio = self.config.freq_ratio
        x = tokens.transpose(1, 2).reshape(-1, channels, ratio, sf // ratio, st)
        return x.permute(0, 1, 3, 2, 4).reshape(-1, channels, sf // ratio, ratio * st)

    def forward_from_features(self, features: torch.Tensor, normalized: bool = False) -> ModelOutput:
        """Run the network on a log-mel ``[B, T, n_mels]`` (``frontend`` output, before ``bn0``).

        With ``normalized=True`` the input is taken as already passed through ``bn0`` (the official recipe applies
        mixup and SpecAugment after ``bn0``).
        """
        x = features if normalized else self.normalize_features(features)
        tokens = self.forward_tokens(self.to_image(x))
        frame_logits = self.tscam_conv(self.tscam_input(tokens)).flatten(2).transpose(1, 2)  # [B, steps, C]
        clip_logits = frame_logits.mean(dim=1)
        return ModelOutput(torch.sigmoid(frame_logits), torch.sigmoid(clip_logits), clip_logits, frame_logits)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _resolve_labels(labels: list[str] | None, num_classes: int) -> list[str]:
    from streamdet.labels import default_labels

    if labels is None:
        return default_labels(num_classes)
    labels = [str(label) for label in labels]
    if len(labels) != num_classes:
        raise ValueError(f"got {len(labels)} labels for a model with {num_classes} classes")
    return labels
