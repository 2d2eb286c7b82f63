"""Optional dependencies (extras): import them only when used, and say how to install them when missing."""

from __future__ import annotations

import importlib
from types import ModuleType


class ExtraMissingError(ImportError):
    """An optional dependency is not installed; the message names the ``pip install "streamdet[EXTRA]"`` to run."""


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`ExtraMissingError`: ``PURPOSE needs the EXTRA extra: pip install
    "streamdet[EXTRA]"``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExtraMissingError(f'{purpose} needs the {extra} extra: pip install "streamdet[{extra}]"') from exc
