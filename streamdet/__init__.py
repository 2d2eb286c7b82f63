"""streamdet: real-time streaming sound-event detection with HTS-AT and AST on ONNX Runtime.

The runtime package never imports torch. The torch side lives in ``streamdet.models``,
``streamdet.export`` and ``streamdet.train`` (install the ``train`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .events import Event, Update

if TYPE_CHECKING:
    from .detector import Detector, Stream

__all__ = ["Detector", "Event", "Stream", "Update", "__version__"]


def __getattr__(name: str) -> Any:
    # Detector pulls in onnxruntime; keep `import streamdet` light until it is used.
    if name in ("Detector", "Stream"):
        from . import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'streamdet' has no attribute {name!r}")
