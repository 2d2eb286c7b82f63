"""streamdet.models: HTS-AT and AST in PyTorch, their front-ends, and checkpoint loading (needs torch).

Public API::

    from streamdet.models import load_checkpoint, save_checkpoint, HTSAT, AST, ASTTokenSemantic
    model = load_checkpoint("HTSAT_AudioSet_Saved_1.ckpt")       # eval mode, architecture inferred
    out = model(waveform)                                         # ModelOutput(framewise, clipwise, logits)
"""

from .ast import AST, ASTConfig, ASTTokenSemantic, resize_pos_grid
from .checkpoint import (
    FORMATS,
    CheckpointError,
    ast_official_state_dict,
    ast_transformers_state_dict,
    detect_format,
    htsat_official_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from .frontends import KaldiFbankFrontend, LogMelFrontend, kaldi_mel_banks, slaney_mel_filterbank
from .htsat import HTSAT, HTSATConfig
from .layers import ModelOutput
from .pretrained import ast_from_deit, htsat_from_swin, load_imagenet_state_dict

__all__ = [
    "AST",
    "FORMATS",
    "HTSAT",
    "ASTConfig",
    "ASTTokenSemantic",
    "CheckpointError",
    "HTSATConfig",
    "KaldiFbankFrontend",
    "LogMelFrontend",
    "ModelOutput",
    "ast_from_deit",
    "ast_official_state_dict",
    "ast_transformers_state_dict",
    "build_model",
    "detect_format",
    "htsat_from_swin",
    "htsat_official_state_dict",
    "kaldi_mel_banks",
    "load_checkpoint",
    "load_imagenet_state_dict",
    "resize_pos_grid",
    "save_checkpoint",
    "slaney_mel_filterbank",
]


def build_model(model_type: str, labels: list[str] | None = None, **config: object) -> "HTSAT | AST":
    """A randomly initialised model by type name (``"htsat"``, ``"ast"``, ``"ast_tscam"``) and config fields."""
    if model_type == "htsat":
        return HTSAT(HTSATConfig(**config), labels=labels)
    if model_type in ("ast", "ast_tscam"):
        cls = AST if model_type == "ast" else ASTTokenSemantic
        return cls(ASTConfig(**config), labels=labels)
    raise ValueError(f"unknown model_type {model_type!r}; expected 'htsat', 'ast' or 'ast_tscam'")
