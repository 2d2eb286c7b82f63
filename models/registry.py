"""The model registry: every model type by name, once (docs/DESIGN.md §2).

``MODEL_TYPES`` maps the ``model_type`` written into checkpoints and ONNX metadata to the class and its config
dataclass. :func:`build_model` (a fresh model), the checkpoint loader and ``save_checkpoint`` all look types up
here, so adding a model type is one entry.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .ast import AST, ASTConfig, ASTTokenSemantic
from .htsat import HTSAT, HTSATConfig
from .layers import SEDModel

__all__ = ["MODEL_TYPES", "ModelType", "build_model", "model_type_of"]


class ModelType(NamedTuple):
    """A registered model type: its class and its architecture config dataclass."""

    cls: type[SEDModel]
    config: type


MODEL_TYPES: dict[str, ModelType] = {
    cls.model_type: ModelType(cls, config)
    for cls, config in ((HTSAT, HTSATConfig), (AST, ASTConfig), (ASTTokenSemantic, ASTConfig))
}


def model_type_of(name: str | None) -> ModelType:
    """The registered type ``name``, or ValueError listing the known ones."""
    if name not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {name!r}; expected one of {', '.join(map(repr, MODEL_TYPES))}")
    return MODEL_TYPES[name]


def build_model(model_type: str, labels: list[str] | None = None, **config: Any) -> SEDModel:
    """A randomly initialised model by type name (``"htsat"``, ``"ast"``, ``"ast_tscam"``) and config fields."""
    entry = model_type_of(model_type)
    return entry.cls(entry.config(**config), labels=labels)
