"""``streamdet serve``: sound-event detection as a network service (HTTP + WebSocket) with a live web page.

Imported only by ``streamdet serve`` (and by code that builds the app itself), never by ``import streamdet``:
it needs the ``serve`` extra (Starlette, uvicorn, websockets, prometheus_client, python-multipart).

- :func:`create_app` builds the ASGI app around a :class:`DetectorPool` and :class:`ServeSettings`;
- the protocol is documented in ``docs/serve.md``; :mod:`streamdet.client` is its Python client.
"""

from __future__ import annotations

from .deps import MISSING_EXTRA_HINT, require_serve_extra

require_serve_extra()

from .app import create_app  # noqa: E402
from .detectors import DetectorPool  # noqa: E402
from .settings import ServeSettings  # noqa: E402

__all__ = ["MISSING_EXTRA_HINT", "DetectorPool", "ServeSettings", "create_app", "require_serve_extra"]
