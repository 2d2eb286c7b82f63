"""Running the app on uvicorn: in the foreground (``streamdet serve``; uvicorn re-raises Ctrl-C as
KeyboardInterrupt after a graceful shutdown) or in a background thread (tests, benchmarks). The listening socket
is bound first, so a busy port is a clear error and port 0 picks a free one."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from .settings import ServeSettings


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); OSError when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def make_server(app: Any, settings: ServeSettings, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app`` whose WebSocket frame limit is ``settings.max_frame_bytes`` (no compression)."""
    config = uvicorn.Config(app, ws="websockets-sansio", ws_max_size=settings.max_frame_bytes,
                            ws_per_message_deflate=False,  # PCM hardly compresses: deflate would only cost CPU
                            log_level=log_level, lifespan="on", timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


@contextlib.contextmanager
def background_server(app: Any, settings: ServeSettings, host: str = "127.0.0.1", port: int = 0,
                      sock: socket.socket | None = None) -> Iterator[str]:
    """Run ``app`` on uvicorn in a daemon thread (on ``sock``, else a new socket on ``host:port``); yields its
    base URL (``http://host:port``) once it serves."""
    sock = sock or bind(host, port)
    host = sock.getsockname()[0]
    server = make_server(app, settings, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()

