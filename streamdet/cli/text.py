"""Untrusted strings on the terminal: shown as text, never as rich markup, control characters escaped.

File names, model labels and metadata, ground-truth labels and device names come from outside streamdet.
Printed through rich as plain ``str`` they would be read as markup (``[/]`` raises MarkupError and loses the
output, ``[live] x.wav`` shows as `` x.wav``), and an ESC sequence in them would reach the terminal raw.
:func:`printable` escapes what a terminal would act on; :func:`plain` wraps the result in a rich ``Text``,
which rich never parses as markup. Every print site in ``streamdet/cli`` goes through one of the two.
"""

from __future__ import annotations

from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C))
_SEPARATORS = frozenset(("\u2028", "\u2029", "\x85"))


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape): show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or ch in _BIDI or ch in _SEPARATORS


def printable(value: Any) -> str:
    """``str(value)`` with every character a terminal would act on escaped: C0/C1 controls and DEL (``\\x1b``,
    ``\\n``, ``\\t``), bidirectional overrides and line separators (``\\u202e``), and lone surrogates (the bytes of
    a non-UTF-8 file name, shown as ``\\xff``), so the result is one line that prints on any terminal and encodes
    to UTF-8. Other characters, brackets included, are kept as they are."""
    text = str(value)
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in text)


def plain(value: Any, style: str = "") -> Any:
    """A rich ``Text`` of :func:`printable` ``(value)``: printed literally (no markup), in ``style``."""
    from rich.text import Text

    return Text(printable(value), style=style)
