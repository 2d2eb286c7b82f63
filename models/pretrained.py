"""ImageNet initialisation for training, from local weight files (timm is not needed).

* :func:`ast_from_deit` — AST from a DeiT (distilled) / ViT state dict, as the official AST code does: the RGB patch
  kernel is summed to one channel, the stride becomes (fstride, tstride), the square positional grid is cut from the
  middle or bilinearly interpolated to the (12, T) patch grid, the ImageNet heads are dropped and ``mlp_head`` (or
  the token-semantic head) is freshly initialised.
* :func:`htsat_from_swin` — HTS-AT from a Swin-T state dict, as HTS-AT's ``main.py`` does: the RGB patch kernel is
  averaged to one channel, the ImageNet head is dropped, ``bn0`` and ``tscam_conv`` keep their fresh init. HTS-AT used
  ``swin_tiny_c24_patch4_window8_256`` (window 8, heads 4-8-16-32); a bias table of another window size is resized
  bicubically (Swin's own fine-tuning rule). Official Microsoft names and timm >= 0.9 names are both read.

Both report what was copied, adapted, dropped and left at initialisation in ``model.provenance["init"]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .ast import AST, ASTConfig, ASTTokenSemantic, resize_pos_grid
from .checkpoint import CheckpointError, _read_torch_file
from .htsat import HTSAT, HTSATConfig

__all__ = ["ast_from_deit", "htsat_from_swin", "load_imagenet_state_dict", "timm_state_dict"]


def load_imagenet_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read a local ImageNet weight file (``.pth`` / ``.bin`` / ``.safetensors``), unwrapping ``model`` /
    ``state_dict`` / ``module.`` containers. A mapping is returned as a plain dict."""
    if isinstance(source, Mapping):
        state: Any = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"ImageNet weight file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = _read_torch_file(path, False)
    for wrapper in ("model", "state_dict", "model_ema"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def timm_state_dict(model_name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights through timm when it is installed (downloads them); otherwise an ImportError that says to
    pass a local file to :func:`ast_from_deit` / :func:`htsat_from_swin` instead."""
    try:
        import timm
    except ImportError as exc:
        raise ImportError(
            "timm is not installed: download the weight file and pass its path (e.g. "
            "deit_base_distilled_patch16_384-d0272ac0.pth or swin_tiny_c24_patch4_window8_256.pth)"
        ) from exc
    return dict(timm.create_model(model_name, pretrained=True).state_dict())


# ====================================================================================================================
# AST <- DeiT / ViT
# ====================================================================================================================


def ast_from_deit(
    source: str | Path | Mapping[str, torch.Tensor],
    config: ASTConfig | None = None,
    labels: list[str] | None = None,
    token_semantic: bool = False,
) -> AST:
    """Build an AST (or :class:`ASTTokenSemantic`) initialised from DeiT / ViT ImageNet weights.

    ``config`` sets the audio geometry and classes; its ``embed_dim``, ``depth``, ``mlp_dim`` and ``qkv_bias`` are
    taken from the weights (``num_heads`` from ``config``; DeiT uses ``embed_dim // 64``). A ViT without a
    distillation token gets ``dist_token`` copied from ``cls_token`` (and its positional embedding likewise).
    """
    state = load_imagenet_state_dict(source)
    name = str(source) if not isinstance(source, Mapping) else "<state dict>"
    try:
        proj = state["patch_embed.proj.weight"]
        pos = state["pos_embed"]
    except KeyError as exc:
        raise CheckpointError(f"{name}: not a ViT/DeiT state dict (missing {exc.args[0]!r})") from exc
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    embed = int(proj.shape[0])
    config = config or ASTConfig()
    heads = config.num_heads if config.embed_dim == embed else max(embed // 64, 1)
    config = ASTConfig(
        **{
            **_fields(config),
            "embed_dim": embed,
            "depth": len(blocks),
            "num_heads": heads,
            "mlp_dim": int(state["blocks.0.mlp.fc1.weight"].shape[0]),
            "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        }
    )
    model = (ASTTokenSemantic if token_semantic else AST)(config, labels=labels)
    target = model.state_dict()

    adapted: dict[str, torch.Tensor] = {}
    report: dict[str, Any] = {"source": name, "adapted": [], "dropped": [], "initialised": []}
    has_dist = "dist_token" in state
    prefix = 2 if has_dist else 1
    grid = math.isqrt(int(pos.shape[1]) - prefix)
    if grid * grid != pos.shape[1] - prefix:
        raise CheckpointError(f"{name}: pos_embed {tuple(pos.shape)} is not a square grid plus {prefix} token(s)")
    if not has_dist:  # reuse the class token for the distillation slot
        state["dist_token"] = state["cls_token"].clone()
        pos = torch.cat([pos[:, :1], pos[:, :1], pos[:, 1:]], dim=1)
        report["adapted"].append("dist_token <- cls_token (ViT without distillation)")
    adapted["pos_embed"] = resize_pos_grid(pos.float(), (grid, grid), (config.f_dim, config.t_dim))
    report["adapted"].append(f"pos_embed: {grid}x{grid} grid -> {config.f_dim}x{config.t_dim}")
    adapted["patch_embed.proj.weight"] = proj.sum(dim=1, keepdim=True)
    report["adapted"].append(f"patch_embed.proj.weight: {proj.shape[1]} channels summed to 1")
    for key, value in state.items():
        if key in adapted:
            continue
        if key.startswith(("head.", "head_dist.", "fc_norm.", "pre_logits.")):
            report["dropped"].append(key)
        elif key in target:
            adapted[key] = value
        else:
            raise CheckpointError(f"{name}: unexpected key {key!r} for a DeiT/ViT backbone")
    _load_partial(model, adapted, name, report)
    model.provenance["init"] = report
    return model


# ====================================================================================================================
# HTS-AT <- Swin-T
# ====================================================================================================================


def htsat_from_swin(
    source: str | Path | Mapping[str, torch.Tensor],
    config: HTSATConfig | None = None,
    labels: list[str] | None = None,
) -> HTSAT:
    """Build an HTS-AT initialised from Swin ImageNet weights (see the module docstring for the adaptation)."""
    state = load_imagenet_state_dict(source)
    name = str(source) if not isinstance(source, Mapping) else "<state dict>"
    config = config or HTSATConfig()
    model = HTSAT(config, labels=labels)
    target = model.state_dict()
    report: dict[str, Any] = {"source": name, "adapted": [], "dropped": [], "initialised": []}

    if "layers.0.downsample.reduction.weight" not in state and "layers.1.downsample.reduction.weight" in state:
        # timm >= 0.9 keeps patch merging at the start of the next stage
        state = {_timm_swin_key(k): v for k, v in state.items()}
        report["adapted"].append("timm Swin names: layers.{i}.downsample -> layers.{i-1}.downsample")
    adapted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("head.") or key.endswith(("relative_position_index", "attn_mask")):
            report["dropped"].append(key)
            continue
        if key == "patch_embed.proj.weight":
            value = value.mean(dim=1, keepdim=True)
            report["adapted"].append(f"patch_embed.proj.weight: {state[key].shape[1]} channels averaged to 1")
        elif key.endswith("relative_position_bias_table") and key in target and value.shape != target[key].shape:
            value = _resize_bias_table(value, target[key].shape, f"{name}: {key}")
            report["adapted"].append(f"{key}: bias table resized bicubically to {tuple(value.shape)}")
        if key not in target:
            raise CheckpointError(f"{name}: unexpected key {key!r} for the HTS-AT Swin backbone")
        adapted[key] = value
    _load_partial(model, adapted, name, report)
    model.provenance["init"] = report
    return model


def _timm_swin_key(key: str) -> str:
    match = re.match(r"layers\.(\d+)\.downsample\.(.+)$", key)
    if match:
        return f"layers.{int(match.group(1)) - 1}.downsample.{match.group(2)}"
    return key.replace("head.fc.", "head.")


def _resize_bias_table(table: torch.Tensor, shape: torch.Size, what: str) -> torch.Tensor:
    old_side, new_side = math.isqrt(table.shape[0]), math.isqrt(shape[0])
    if table.shape[1] != shape[1]:
        raise CheckpointError(f"{what}: {table.shape[1]} heads in the file, {shape[1]} in the model")
    grid = table.T.reshape(1, table.shape[1], old_side, old_side)
    grid = F.interpolate(grid.float(), size=(new_side, new_side), mode="bicubic", align_corners=False)
    return grid.reshape(table.shape[1], new_side * new_side).T.contiguous()


# ====================================================================================================================
# helpers
# ====================================================================================================================


def _fields(config: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _load_partial(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str, report: dict[str, Any]) -> None:
    """Copy ``state`` into ``model``: shapes must match; model tensors not in ``state`` keep their fresh init."""
    target = model.state_dict()
    wrong = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state.items()
        if tuple(v.shape) != tuple(target[k].shape)
    ]
    if wrong:
        raise CheckpointError(f"{name}: shape mismatches ({len(wrong)}): " + "; ".join(wrong))
    report["initialised"] = sorted(set(target) - set(state))
    report["copied"] = len(state)
    model.load_state_dict({**target, **{k: v.to(target[k].dtype) for k, v in state.items()}}, strict=True)
