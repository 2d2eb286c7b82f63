"""streamdet.models: HTS-AT and AST in PyTorch, their front-ends, and checkpoint loading (needs torch).

Public API::

    from streamdet.models import load_checkpoint, save_checkpoint, HTSAT, AST, ASTTokenSemantic
    model = load_checkpoint("HTSAT_AudioSet_Saved_1.ckpt")       # eval mode, architecture inferred
    out = model(waveform)                         # ModelOutput(framewise, clipwise, logits, frame_logits)
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
from .layers import CONTRACT_ATTRIBUTES, ModelOutput, SEDModel, StreamdetModel, contract_gaps
from .pretrained import ast_from_deit, htsat_from_swin, load_imagenet_state_dict
from .registry import MODEL_TYPES, ModelType, build_model, model_type_of

__all__ = [
    "AST",
    "CONTRACT_ATTRIBUTES",
    "FORMATS",
    "HTSAT",
    "MODEL_TYPES",
    "ASTConfig",
    "ASTTokenSemantic",
    "CheckpointError",
    "HTSATConfig",
    "KaldiFbankFrontend",
    "LogMelFrontend",
    "ModelOutput",
    "ModelType",
    "SEDModel",
    "StreamdetModel",
    "ast_from_deit",
    "ast_official_state_dict",
    "ast_transformers_state_dict",
    "build_model",
    "contract_gaps",
    "detect_format",
    "htsat_from_swin",
    "htsat_official_state_dict",
    "kaldi_mel_banks",
    "load_checkpoint",
    "load_imagenet_state_dict",
    "model_type_of",
    "resize_pos_grid",
    "save_checkpoint",
    "slaney_mel_filterbank",
]

