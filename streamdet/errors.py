"""Turning an exception from a library (libsndfile, ONNX Runtime, torch, onnx) into a short message.

Library exceptions often carry several lines (a traceback of the C++ side, a banner before the reason); the
messages streamdet prints keep one of them. This is the one place that rule lives.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["short_error"]


def short_error(exc: BaseException, *, line: Literal["first", "last"] = "first", limit: int = 300,
                with_type: bool = False) -> str:
    """One line of ``exc``'s message (its ``first`` or ``last`` non-empty line), at most ``limit`` characters.

    An exception that carries the library's own reason (soundfile's ``error_string``, without its "Error opening
    ...:" banner) gives that. An exception without a message gives its type name; ``with_type`` prefixes the type
    name anyway (``"KeyError: 'x'"``).
    """
    reason = getattr(exc, "error_string", None)
    message = reason if isinstance(reason, str) and reason.strip() else str(exc)
    lines = [text for text in message.strip().splitlines() if text.strip()]
    if not lines:
        return type(exc).__name__
    text = (lines[0] if line == "first" else lines[-1]).strip()[:limit]
    return f"{type(exc).__name__}: {text}" if with_type else text
