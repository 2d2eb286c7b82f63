"""The ``streamdet`` command line (docs/DESIGN.md §6).

Exit codes: 0 success, 1 some inputs failed (each reported), 2 usage error, 130 on Ctrl-C.
"""

from __future__ import annotations

from .app import app


def main() -> None:
    """Entry point of the ``streamdet`` console script."""
    app()


__all__ = ["app", "main"]
