"""The check that the ``serve`` extra is installed, with a message that says how to install it."""

from __future__ import annotations

import importlib.util

SERVE_PACKAGES = {"starlette": "starlette", "uvicorn": "uvicorn", "websockets": "websockets",
                  "prometheus_client": "prometheus_client", "multipart": "python-multipart"}
MISSING_EXTRA_HINT = 'install the serve extra: pip install "streamdet[serve]"'


class MissingExtraError(ImportError):
    """A package of the ``serve`` extra is not installed (the message names it and the pip command)."""


def missing_serve_packages(modules: dict[str, str] | None = None) -> list[str]:
    """The distribution names of the ``serve`` extra's packages that cannot be imported."""
    wanted = SERVE_PACKAGES if modules is None else modules
    return [dist for module, dist in wanted.items() if importlib.util.find_spec(module) is None]


def require_serve_extra(modules: dict[str, str] | None = None) -> None:
    """Raise :class:`MissingExtraError` naming the missing packages and ``pip install "streamdet[serve]"``."""
    missing = missing_serve_packages(modules)
    if missing:
        raise MissingExtraError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
                                f"{MISSING_EXTRA_HINT}")
