"""Errors raised by :mod:`streamdet.export`."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The model cannot be exported as asked (window, labels, output path) or the export failed verification."""
