"""Checkpoint loading and saving: official HTS-AT / AST files, transformers AST folders, streamdet's own format.

:func:`load_checkpoint` detects the format, infers the architecture from tensor shapes, checks the tensors that the
official files store but streamdet recomputes (STFT / mel kernels, attention masks, index buffers), and loads
strictly: every key must be used or be a known unused one, and every model tensor must be present.
:func:`save_checkpoint` writes one file with weights, architecture, labels, front-end and provenance.
The ``*_state_dict`` functions convert a model back to the official / transformers key layouts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamdet.errors import short_error

from .ast import ASTConfig, resize_pos_grid
from .convert import (
    AST_UNUSED,
    HTSAT_FRONTEND_KEYS,
    HTSAT_UNUSED,
    ast_official_state_dict,
    ast_transformers_state_dict,
    htsat_official_state_dict,
    strip_ast_official,
    strip_htsat_official,
    transformers_to_streamdet,
)
from .errors import CheckpointError
from .htsat import HTSAT, HTSATConfig
from .registry import MODEL_TYPES

__all__ = [
    "FORMATS",
    "CheckpointError",
    "ast_official_state_dict",
    "ast_transformers_state_dict",
    "detect_format",
    "htsat_official_state_dict",
    "load_checkpoint",
    "save_checkpoint",
]

STREAMDET_FORMAT = "streamdet-checkpoint"
STREAMDET_FORMAT_VERSION = 1
FORMATS = ("htsat_official", "ast_official", "ast_transformers", "streamdet")
LOADER_OPTIONS = ("labels", "model_type", "allow_pickle")
AST_KNOWN_LENGTHS = (1024, 512, 128, 100, 998, 500)  # official recipes: AudioSet, ESC-50, Speech Commands, ...
DEIT_HEAD_DIM = 64  # heads are not visible in the weights; DeiT/ViT use 64-dim heads (tiny 3, small 6, base 12)


# ====================================================================================================================
# Public API
# ====================================================================================================================


def load_checkpoint(path: str | Path, **overrides: Any) -> nn.Module:
    """Load a model from a checkpoint file or folder and return it in eval mode.

    Formats (detected from the content): the official HTS-AT ``.ckpt`` (``{'state_dict': {'sed_model.*': ...}}``),
    the official AST ``.pth`` (DataParallel state dict, ``module.v.*`` / ``module.mlp_head.*``), a transformers AST
    folder (``config.json`` + ``model.safetensors``), and streamdet's own file written by :func:`save_checkpoint`.

    Overrides: ``labels=[...]``; any field of the architecture config (``HTSATConfig`` / ``ASTConfig``), e.g.
    ``fmin=...`` for an HTS-AT trained with another front-end, ``num_heads=...`` for a non-DeiT AST, or
    ``target_length=...`` to run an AST on another input length (positional grid cut / interpolated as in the
    official code); ``model_type="ast_tscam"`` to put a freshly initialised token-semantic head on an AST backbone;
    ``allow_pickle=True`` to read a trusted file that ``torch.load(weights_only=True)`` refuses.

    The returned model has ``source = {file, path, sha256, format, ...}`` describing what was loaded.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    unknown = set(overrides) - set(LOADER_OPTIONS) - _all_config_fields()
    if unknown:
        raise TypeError(
            f"unknown override(s) {sorted(unknown)} for {path.name}; valid: {sorted(LOADER_OPTIONS)} and the fields "
            f"of HTSATConfig / ASTConfig"
        )
    if path.is_dir():
        model, fmt, digest_file, notes = _load_transformers_folder(path, dict(overrides))
    else:
        obj = _read_torch_file(path, bool(overrides.get("allow_pickle", False)))
        fmt = detect_format(obj, path)
        loader = {"htsat_official": _load_htsat_official, "ast_official": _load_ast_official, "streamdet": _load_own}
        model, notes = loader[fmt](obj, path, dict(overrides))
        digest_file = path
    model.source = {
        "file": path.name,
        "path": str(path.resolve()),
        "sha256": _sha256(digest_file),
        "format": fmt,
        **notes,
    }
    return model.eval()


def save_checkpoint(model: nn.Module, path: str | Path, **extra_provenance: Any) -> Path:
    """Write ``model`` in streamdet's format: one ``torch.save`` file readable with ``weights_only=True``.

    Contents: ``format``, ``format_version``, ``streamdet_version``, ``model_type``, ``config`` (the architecture
    dataclass as a dict), ``labels``, ``frontend`` (``model.frontend_config()``), ``provenance`` (the model's
    provenance, where it was converted from, and ``extra_provenance``) and ``state_dict``. Values in
    ``extra_provenance`` must be plain Python data (str, numbers, lists, dicts).
    """
    path = Path(path)
    if getattr(model, "model_type", None) not in MODEL_TYPES:
        raise TypeError(f"save_checkpoint needs a streamdet model (HTSAT / AST / ASTTokenSemantic), got {type(model)}")
    provenance = dict(getattr(model, "provenance", {}) or {})
    if getattr(model, "source", None):
        provenance.setdefault("converted_from", dict(model.source))
    provenance.update(extra_provenance)
    payload = {
        "format": STREAMDET_FORMAT,
        "format_version": STREAMDET_FORMAT_VERSION,
        "streamdet_version": _streamdet_version(),
        "model_type": model.model_type,
        "config": dataclasses.asdict(model.config),
        "labels": list(model.labels),
        "frontend": model.frontend_config(),
        "provenance": json.loads(json.dumps(provenance, default=str)),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def detect_format(obj: Any, path: str | Path = "<object>") -> str:
    """Name the checkpoint format of a loaded object: one of :data:`FORMATS` (folders are ``ast_transformers``)."""
    name = Path(path).name
    if isinstance(obj, Mapping) and obj.get("format") == STREAMDET_FORMAT:
        return "streamdet"
    state = obj.get("state_dict") if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) else obj
    if not isinstance(state, Mapping) or not state or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{name}: unknown checkpoint format (not a state dict or a dict with 'state_dict')")
    keys = list(state)
    if any(k.startswith("sed_model.") for k in keys) or ("tscam_conv.weight" in state and "bn0.weight" in state):
        return "htsat_official"
    stripped = [k.removeprefix("module.") for k in keys]
    if any(k.startswith("v.patch_embed.") for k in stripped) and any(k.startswith("mlp_head.") for k in stripped):
        return "ast_official"
    if any(k.startswith("audio_spectrogram_transformer.") for k in keys):
        raise CheckpointError(
            f"{name}: transformers AST weights need their config.json: pass the folder that holds both files"
        )
    raise CheckpointError(f"{name}: unknown checkpoint format; first keys: {keys[:5]}")


# ====================================================================================================================
# Reading files
# ====================================================================================================================


def _read_torch_file(path: Path, allow_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        if not allow_pickle or not _is_weights_only_refusal(exc):
            hint = " (pass allow_pickle=True if you trust it)" if _is_weights_only_refusal(exc) else ""
            message = f"{path.name}: cannot read as a PyTorch checkpoint{hint}: {_why_unreadable(path, exc)}"
            raise CheckpointError(message) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        reason = short_error(exc, with_type=True)
        raise CheckpointError(f"{path.name}: cannot read as a PyTorch checkpoint: {reason}") from exc


def _is_weights_only_refusal(exc: Exception) -> bool:
    """True when ``weights_only=True`` refused a global that a full unpickle could resolve."""
    text = str(exc)
    return "Unsupported global" in text or "Unsupported operand" in text


def _why_unreadable(path: Path, exc: Exception) -> str:
    """What is wrong with a file ``torch.load`` refused: empty, not a torch.save file at all, or torch's reason."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    if not head:
        return "the file is empty"
    if not head.startswith((b"PK", b"\x80")):  # torch.save writes a zip archive (or, legacy, a pickle)
        return f"not a torch.save file (neither a zip archive nor a pickle; it starts with {head!r})"
    return short_error(exc, with_type=True)



def _streamdet_version() -> str:
    from streamdet import __version__

    return __version__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _all_config_fields() -> set[str]:
    return {f.name for cls in (HTSATConfig, ASTConfig) for f in dataclasses.fields(cls)}


def _split_overrides(overrides: dict[str, Any], config_cls: type, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate loader options from config fields, rejecting fields this architecture does not have."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    options = {k: overrides.pop(k) for k in LOADER_OPTIONS if k in overrides}
    wrong = set(overrides) - fields
    if wrong:
        raise TypeError(f"{name}: override(s) {sorted(wrong)} do not apply to a {config_cls.__name__}")
    return options, overrides


# ====================================================================================================================
# Strict loading
# ====================================================================================================================


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], name: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing / unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [f"{name}: the checkpoint does not match the {type(model).__name__} architecture inferred from it"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes)}")
        raise CheckpointError("\n  ".join(parts))
    fixed = {k: v.to(own[k].dtype) if own[k].dtype != v.dtype else v for k, v in state.items()}
    model.load_state_dict(fixed, strict=True)


def _check_close(stored: torch.Tensor, computed: torch.Tensor, what: str, name: str, atol: float, hint: str) -> None:
    if tuple(stored.shape) != tuple(computed.shape):
        raise CheckpointError(
            f"{name}: stored {what} has shape {tuple(stored.shape)}, the model computes {tuple(computed.shape)}{hint}"
        )
    diff = (stored.double() - computed.double()).abs().max().item() if stored.numel() else 0.0
    if not diff <= atol:
        raise CheckpointError(f"{name}: stored {what} differs from the recomputed one by {diff:.3g} (> {atol}){hint}")


# ====================================================================================================================
# HTS-AT official
# ====================================================================================================================

def infer_htsat_config(state: Mapping[str, torch.Tensor], name: str = "<state>") -> HTSATConfig:
    """Architecture of an HTS-AT state dict (official names, no prefix) read from its tensor shapes.

    Sample rate, hop and the mel range cannot be read from shapes: they keep the AudioSet defaults and are verified
    against the stored mel filterbank when the checkpoint has one.
    """
    try:
        proj = state["patch_embed.proj.weight"]
        depths, heads = [], []
        for i in range(100):
            blocks = {int(m.group(1)) for k in state if (m := re.match(rf"layers\.{i}\.blocks\.(\d+)\.", k))}
            if not blocks:
                break
            depths.append(max(blocks) + 1)
            heads.append(int(state[f"layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1]))
        table = int(state["layers.0.blocks.0.attn.relative_position_bias_table"].shape[0])
        window = (math.isqrt(table) + 1) // 2
        embed = int(proj.shape[0])
        kwargs: dict[str, Any] = {
            "num_classes": int(state["tscam_conv.weight"].shape[0]),
            "n_mels": int(state["bn0.weight"].shape[0]),
            "embed_dim": embed,
            "patch_size": int(proj.shape[-1]),
            "patch_stride": (int(proj.shape[-1]), int(proj.shape[-1])),
            "depths": tuple(depths),
            "num_heads": tuple(heads),
            "window_size": window,
            "mlp_ratio": state["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / embed,
            "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in state,
        }
    except KeyError as exc:
        raise CheckpointError(f"{name}: not a complete HTS-AT state dict, missing {exc.args[0]!r}") from exc
    if HTSAT_FRONTEND_KEYS[0] in state:
        kwargs["n_fft"] = int(state[HTSAT_FRONTEND_KEYS[0]].shape[-1])
    mask = state.get("layers.0.blocks.1.attn_mask")
    if mask is not None:  # [nW, M², M²] on the first stage's grid -> spectrogram size
        kwargs["spec_size"] = window * math.isqrt(int(mask.shape[0])) * kwargs["patch_stride"][0]
    return HTSATConfig(**kwargs)


def _load_htsat_official(obj: Any, path: Path, overrides: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    name = path.name
    options, fields = _split_overrides(overrides, HTSATConfig, name)
    if options.get("model_type", "htsat") != "htsat":
        raise CheckpointError(f"{name}: an HTS-AT checkpoint cannot be loaded as model_type={options['model_type']!r}")
    state = strip_htsat_official(obj)
    config = dataclasses.replace(infer_htsat_config(state, name), **fields)
    model = HTSAT(config, labels=options.get("labels"))
    ignored = _check_htsat_derived(model, state, name)
    _load_strict(model, state, name)
    return model, {"ignored_keys": ignored, "config_inferred_from_shapes": True}


def _check_htsat_derived(model: HTSAT, state: dict[str, torch.Tensor], name: str) -> list[str]:
    """Pop (and verify) the tensors HTS-AT stores but streamdet recomputes; return the ignored unused keys."""
    hint = "; pass sample_rate=/n_fft=/hop_length=/fmin=/fmax= overrides matching the training config"
    frontend = model.frontend
    stored = {k: state.pop(k) for k in HTSAT_FRONTEND_KEYS if k in state}
    if HTSAT_FRONTEND_KEYS[0] in stored:
        _check_close(stored[HTSAT_FRONTEND_KEYS[0]], frontend.dft_real, "STFT kernel (real)", name, 1e-6, hint)
    if HTSAT_FRONTEND_KEYS[1] in stored:
        _check_close(stored[HTSAT_FRONTEND_KEYS[1]], frontend.dft_imag, "STFT kernel (imag)", name, 1e-6, hint)
    if HTSAT_FRONTEND_KEYS[2] in stored:
        _check_close(stored[HTSAT_FRONTEND_KEYS[2]], frontend.mel_basis, "mel filterbank melW", name, 1e-6, hint)
    for i, stage in enumerate(model.layers):
        for j, block in enumerate(stage.blocks):
            prefix = f"layers.{i}.blocks.{j}."
            index = state.pop(prefix + "attn.relative_position_index", None)
            if index is not None:  # float32 in the weight-averaged release: compare after rounding
                _check_close(index.round(), block.attn.relative_position_index, prefix + "relative_position_index",
                             name, 0.0, "")
            mask = state.pop(prefix + "attn_mask", None)
            if mask is not None and block.attn_mask is None:
                raise CheckpointError(f"{name}: {prefix}attn_mask is stored but the inferred block is not shifted")
            if mask is not None:
                _check_close(mask, block.attn_mask, prefix + "attn_mask", name, 0.0, "")
    ignored = [k for k in HTSAT_UNUSED if k in state]
    for key in ignored:
        state.pop(key)
    return ignored


# ====================================================================================================================
# AST official (YuanGongND/ast) and transformers
# ====================================================================================================================

def infer_ast_config(state: Mapping[str, torch.Tensor], name: str = "<state>", **known: Any) -> ASTConfig:
    """Architecture of an AST state dict (streamdet / official names) from tensor shapes.

    ``num_heads`` is not visible in the weights: it defaults to ``embed_dim // 64`` (DeiT). The patch strides and
    input length come from the positional grid: defaults (10, 10, 1024 frames) or the official recipes' lengths.
    """
    try:
        proj = state["patch_embed.proj.weight"]
        embed = int(proj.shape[0])
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
        kwargs: dict[str, Any] = {
            "embed_dim": embed,
            "patch_size": int(proj.shape[-1]),
            "depth": max(blocks) + 1 if blocks else 0,
            "mlp_dim": int(state["blocks.0.mlp.fc1.weight"].shape[0]) if blocks else 4 * embed,
            "num_heads": max(embed // DEIT_HEAD_DIM, 1),
            "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        }
        if "mlp_head.1.weight" in state:
            kwargs["num_classes"] = int(state["mlp_head.1.weight"].shape[0])
        elif "tscam_conv.weight" in state:
            kwargs["num_classes"] = int(state["tscam_conv.weight"].shape[0])
        positions = int(state["pos_embed"].shape[1]) - 2
    except KeyError as exc:
        raise CheckpointError(f"{name}: not a complete AST state dict, missing {exc.args[0]!r}") from exc
    if proj.shape[1] != 1:
        raise CheckpointError(
            f"{name}: patch embedding has {proj.shape[1]} input channels: this is an ImageNet ViT/DeiT, not an AST; "
            f"use streamdet.models.ast_from_deit() to initialise an AST from it"
        )
    kwargs.update(known)
    config = ASTConfig(**kwargs)
    if config.num_patches == positions:
        return config
    for length in AST_KNOWN_LENGTHS:
        candidate = dataclasses.replace(config, target_length=length)
        if candidate.num_patches == positions:
            return candidate
    raise CheckpointError(
        f"{name}: {positions} patch positions do not match fstride={config.fstride}, tstride={config.tstride}, "
        f"n_mels={config.n_mels} for any known input length; pass the training fstride=/tstride=/target_length="
    )


def _finish_ast(
    state: dict[str, torch.Tensor],
    base: ASTConfig,
    fields: dict[str, Any],
    options: dict[str, Any],
    labels: list[str] | None,
    name: str,
) -> tuple[nn.Module, dict[str, Any]]:
    """Apply overrides (grid resize, token-semantic head) to a streamdet-named AST state dict and load strictly."""
    notes: dict[str, Any] = {}
    config = dataclasses.replace(base, **fields)
    model_type = options.get("model_type", "ast_tscam" if "tscam_conv.weight" in state else "ast")
    if model_type not in ("ast", "ast_tscam"):
        raise CheckpointError(f"{name}: an AST checkpoint cannot be loaded as model_type={model_type!r}")
    model = MODEL_TYPES[model_type].cls(config, labels=options.get("labels", labels))
    old_grid, new_grid = (base.f_dim, base.t_dim), (config.f_dim, config.t_dim)
    if old_grid != new_grid:
        state["pos_embed"] = resize_pos_grid(state["pos_embed"], old_grid, new_grid)
        notes["pos_embed_resized"] = {"from": list(old_grid), "to": list(new_grid)}
    head_keys = [k for k in state if k.startswith("mlp_head.")]
    if model_type == "ast_tscam" and head_keys:
        for key in head_keys:
            state.pop(key)
        notes["dropped_keys"] = sorted(head_keys)
        notes["initialised_keys"] = sorted(k for k in model.state_dict() if k.startswith("tscam_conv."))
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("tscam_conv.")})
    _load_strict(model, state, name)
    return model, notes


def _load_ast_official(obj: Any, path: Path, overrides: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    name = path.name
    options, fields = _split_overrides(overrides, ASTConfig, name)
    state = strip_ast_official(obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj)
    ignored = [k for k in AST_UNUSED if k in state]
    for key in ignored:
        state.pop(key)
    known = {k: fields[k] for k in ("num_heads", "fstride", "tstride", "n_mels", "patch_size") if k in fields}
    base = infer_ast_config(state, name, **known)
    model, notes = _finish_ast(state, base, fields, options, None, name)
    return model, {"ignored_keys": ["module.v." + k for k in ignored], "config_inferred_from_shapes": True, **notes}


def _load_transformers_folder(path: Path, overrides: dict[str, Any]) -> tuple[nn.Module, str, Path, dict[str, Any]]:
    name = path.name
    config_file = path / "config.json"
    weight_files = [path / "model.safetensors", path / "pytorch_model.bin"]
    weights = next((f for f in weight_files if f.is_file()), None)
    if not config_file.is_file() or weights is None:
        present = sorted(p.name for p in path.iterdir())
        raise CheckpointError(
            f"{name}: a checkpoint folder must hold a transformers AST (config.json and model.safetensors); "
            f"found {present or 'nothing'}"
        )
    try:
        hf = json.loads(config_file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{name}/config.json: unreadable JSON: {exc}") from exc
    if hf.get("model_type") != "audio-spectrogram-transformer":
        raise CheckpointError(f"{name}/config.json: model_type {hf.get('model_type')!r} is not an AST")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{name}/config.json: hidden_act {hf.get('hidden_act')!r} is not supported (gelu only)")
    if weights.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw = load_file(str(weights))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{name}/{weights.name}: unreadable safetensors file: {exc}") from exc
    else:
        raw = _read_torch_file(weights, False)
    state = transformers_to_streamdet(raw, f"{name}/{weights.name}")
    eps = float(hf.get("layer_norm_eps", 1e-12))
    known: dict[str, Any] = {
        "num_heads": int(hf.get("num_attention_heads", 12)),
        "n_mels": int(hf.get("num_mel_bins", 128)),
        "fstride": int(hf.get("frequency_stride", 10)),
        "tstride": int(hf.get("time_stride", 10)),
        "target_length": int(hf.get("max_length", 1024)),
        "block_eps": eps,
        "head_eps": eps,
    }
    preprocessor = path / "preprocessor_config.json"
    if preprocessor.is_file():
        pre = json.loads(preprocessor.read_text("utf-8"))
        if not pre.get("do_normalize", True):
            raise CheckpointError(f"{name}/preprocessor_config.json: do_normalize=false is not supported")
        known.update(
            sample_rate=int(pre.get("sampling_rate", 16000)),
            norm_mean=float(pre.get("mean", -4.2677393)),
            norm_std=float(pre.get("std", 4.5689974)),
        )
    options, fields = _split_overrides(dict(overrides), ASTConfig, name)
    base = infer_ast_config(state, name, **known)
    id2label = hf.get("id2label") or {}
    labels = [str(id2label.get(str(i), id2label.get(i, ""))) for i in range(len(id2label))]
    generic = not labels or all(re.fullmatch(r"(LABEL|class)_\d+", label) for label in labels)
    model, notes = _finish_ast(state, base, fields, options, None if generic else labels, name)
    return model, "ast_transformers", weights, {"config_file": "config.json", "weights_file": weights.name, **notes}


# ====================================================================================================================
# streamdet's own format
# ====================================================================================================================


def _load_own(obj: Mapping[str, Any], path: Path, overrides: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    name = path.name
    version = obj.get("format_version")
    if version != STREAMDET_FORMAT_VERSION:
        raise CheckpointError(f"{name}: streamdet checkpoint version {version!r} is not supported")
    model_type = obj.get("model_type")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"{name}: unknown model_type {model_type!r}")
    config_cls = MODEL_TYPES[model_type].config
    options, fields = _split_overrides(dict(overrides), config_cls, name)
    try:
        base = config_cls(**obj["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{name}: invalid architecture config: {exc}") from exc
    state = dict(obj["state_dict"])
    labels = options.pop("labels", obj.get("labels"))
    if model_type == "htsat":
        if options.get("model_type", "htsat") != "htsat":
            raise CheckpointError(f"{name}: an HTS-AT checkpoint cannot be loaded as {options['model_type']!r}")
        model: nn.Module = HTSAT(dataclasses.replace(base, **fields), labels=labels)
        _load_strict(model, state, name)
        notes: dict[str, Any] = {}
    else:
        options.setdefault("model_type", model_type)
        model, notes = _finish_ast(state, base, fields, {**options, "labels": labels}, None, name)
    stored_frontend = obj.get("frontend")
    if not fields and stored_frontend is not None and stored_frontend != model.frontend_config():
        raise CheckpointError(f"{name}: stored front-end {stored_frontend} differs from {model.frontend_config()}")
    model.provenance = dict(obj.get("provenance") or {})
    return model, notes
