"""Key layouts: converting between streamdet's parameter names and the official HTS-AT / AST and transformers ones.

streamdet's modules use the official names without their wrappers (HTS-AT: no ``sed_model.`` prefix; AST: no
``module.v.`` prefix, ``mlp_head.*`` kept). What differs: the tensors the official files store but streamdet
recomputes (STFT / mel kernels, attention masks, index buffers), the unused heads, and transformers' names with q/k/v
split.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from .ast import AST
from .errors import CheckpointError
from .htsat import HTSAT

__all__ = [
    "ast_official_state_dict",
    "ast_transformers_state_dict",
    "htsat_official_state_dict",
    "strip_ast_official",
    "strip_htsat_official",
    "transformers_to_streamdet",
]

# ====================================================================================================================
# HTS-AT official (RetroCirce/HTS-Audio-Transformer)
# ====================================================================================================================

HTSAT_FRONTEND_KEYS = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
)
HTSAT_UNUSED = ("head.weight", "head.bias")


def strip_htsat_official(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The HTS-AT state dict of an official ``.ckpt`` (or a bare state dict) without the ``sed_model.`` prefix."""
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj
    prefixed = [k for k in state if k.startswith("sed_model.")]
    if prefixed:
        return {k.removeprefix("sed_model."): v for k, v in state.items() if k.startswith("sed_model.")}
    return dict(state)


def htsat_official_state_dict(model: HTSAT, prefix: str = "sed_model.") -> dict[str, torch.Tensor]:
    """The model's tensors under the official HTS-AT names, with the recomputed front-end kernels, masks and index
    buffers and a zero ``head`` (unused by the official forward); wrap as ``{'state_dict': ...}`` for a ``.ckpt``."""
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    frontend = model.frontend
    out[prefix + HTSAT_FRONTEND_KEYS[0]] = frontend.dft_real.clone()
    out[prefix + HTSAT_FRONTEND_KEYS[1]] = frontend.dft_imag.clone()
    out[prefix + HTSAT_FRONTEND_KEYS[2]] = frontend.mel_basis.clone()
    for key, value in own.items():
        if key.startswith("layers.") and ".blocks." in key and key.endswith("attn.relative_position_bias_table"):
            block_prefix = key.removesuffix("attn.relative_position_bias_table")
            i, j = (int(n) for n in re.findall(r"\d+", block_prefix)[:2])
            block = model.layers[i].blocks[j]
            if block.attn_mask is not None:
                out[prefix + block_prefix + "attn_mask"] = block.attn_mask.clone()
            out[prefix + key] = value
            out[prefix + block_prefix + "attn.relative_position_index"] = block.attn.relative_position_index.clone()
        else:
            out[prefix + key] = value
    C = model.config.num_classes
    device = model.tscam_conv.weight.device
    out[prefix + "head.weight"] = torch.zeros(C, C, device=device)
    out[prefix + "head.bias"] = torch.zeros(C, device=device)
    return out


# ====================================================================================================================
# AST official (YuanGongND/ast) and transformers
# ====================================================================================================================

AST_UNUSED = ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias")


def strip_ast_official(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official AST state dict under streamdet names: ``module.`` and ``v.`` prefixes removed."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        out[key.removeprefix("v.")] = value
    return out


def ast_official_state_dict(model: AST) -> dict[str, torch.Tensor]:
    """The model's tensors under the official AST names (``module.v.*``, ``module.mlp_head.*``), with zero 1000-class
    ``head`` / ``head_dist`` (ImageNet heads the official forward never uses)."""
    if model.model_type != "ast":
        raise TypeError("only the official AST head has an official layout; got " + model.model_type)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        out[("module." if key.startswith("mlp_head.") else "module.v.") + key] = value
    D, device = model.config.embed_dim, model.pos_embed.device
    for head in ("head", "head_dist"):
        out[f"module.v.{head}.weight"] = torch.zeros(1000, D, device=device)
        out[f"module.v.{head}.bias"] = torch.zeros(1000, device=device)
    return out


# transformers names: (regex on the hub key, replacement) in both the legacy (hub files) and v5 (in memory) layouts
_HF_RULES: list[tuple[str, str]] = [
    (r"audio_spectrogram_transformer\.embeddings\.cls_token", "cls_token"),
    (r"audio_spectrogram_transformer\.embeddings\.distillation_token", "dist_token"),
    (r"audio_spectrogram_transformer\.embeddings\.position_embeddings", "pos_embed"),
    (r"audio_spectrogram_transformer\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"audio_spectrogram_transformer\.(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"audio_spectrogram_transformer\.(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.",
     r"blocks.\1.attn.\2."),
    (r"audio_spectrogram_transformer\.layers\.(\d+)\.attention\.(q|k|v)_proj\.", r"blocks.\1.attn.\2."),
    (r"audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"audio_spectrogram_transformer\.layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"audio_spectrogram_transformer\.layers\.(\d+)\.mlp\.(fc1|fc2)\.", r"blocks.\1.mlp.\2."),
    (r"audio_spectrogram_transformer\.layernorm\.", "norm."),
    (r"classifier\.layernorm\.", "mlp_head.0."),
    (r"classifier\.dense\.", "mlp_head.1."),
]
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def transformers_to_streamdet(state: Mapping[str, torch.Tensor], name: str = "<state>") -> dict[str, torch.Tensor]:
    """Rename a transformers AST state dict (legacy hub or v5 names) to streamdet names, fusing q/k/v into qkv."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        for pattern, repl in _HF_RULES:
            match = re.match(pattern, key)
            if match:
                new = re.sub(pattern, repl, key, count=1)
                part = re.match(r"blocks\.(\d+)\.attn\.(query|key|value|q|k|v)\.(weight|bias)$", new)
                if part:
                    block, which, kind = part.groups()
                    qkv.setdefault((block, kind), {})[_QKV_ORDER[which]] = value
                else:
                    out[new] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{name}: unexpected keys for a transformers AST ({len(unknown)}): {', '.join(unknown)}")
    for (block, kind), parts in qkv.items():
        if sorted(parts) != [0, 1, 2]:
            raise CheckpointError(f"{name}: layer {block} lacks some of query/key/value {kind}")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return out


def ast_transformers_state_dict(model: AST, naming: str = "legacy") -> dict[str, torch.Tensor]:
    """The model's tensors under transformers names: ``naming="legacy"`` (hub files) or ``"v5"`` (in memory)."""
    if model.model_type != "ast":
        raise TypeError("only the official AST head has a transformers layout; got " + model.model_type)
    if naming not in ("legacy", "v5"):
        raise ValueError(f"naming must be 'legacy' or 'v5', got {naming!r}")
    root = "audio_spectrogram_transformer."
    layer = root + ("encoder.layer." if naming == "legacy" else "layers.")
    names = {
        "legacy": {"qkv": ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
                   "proj": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense"},
        "v5": {"qkv": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
               "proj": "attention.o_proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"},
    }[naming]
    fixed = {
        "cls_token": root + "embeddings.cls_token",
        "dist_token": root + "embeddings.distillation_token",
        "pos_embed": root + "embeddings.position_embeddings",
        "patch_embed.proj.weight": root + "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": root + "embeddings.patch_embeddings.projection.bias",
        "norm.weight": root + "layernorm.weight",
        "norm.bias": root + "layernorm.bias",
        "mlp_head.0.weight": "classifier.layernorm.weight",
        "mlp_head.0.bias": "classifier.layernorm.bias",
        "mlp_head.1.weight": "classifier.dense.weight",
        "mlp_head.1.bias": "classifier.dense.bias",
    }
    sub = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": names["proj"],
           "mlp.fc1": names["fc1"], "mlp.fc2": names["fc2"]}
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        block, rest = re.match(r"blocks\.(\d+)\.(.+)$", key).groups()
        module, kind = rest.rsplit(".", 1)
        if module == "attn.qkv":
            for part_name, part in zip(names["qkv"], value.chunk(3, dim=0), strict=True):
                out[f"{layer}{block}.{part_name}.{kind}"] = part
        else:
            out[f"{layer}{block}.{sub[module]}.{kind}"] = value
    return out
