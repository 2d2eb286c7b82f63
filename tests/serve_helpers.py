"""Helpers of the ``streamdet serve`` tests: a real server on a free loopback port, raw WebSocket clients."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

import streamdet
from streamdet.client import open_websocket
from streamdet.serve import DetectorPool, ServeSettings, create_app
from streamdet.serve.server import background_server


@contextlib.contextmanager
def running_server(model: Path | None, detector: Any = None, sock: socket.socket | None = None,
                   **settings: Any) -> Iterator[tuple[str, Any]]:
    """A real uvicorn server on 127.0.0.1 (a free port) serving ``model``: yields ``(base_url, context)``,
    where ``context`` is the app's :class:`ServerContext` (for the memory checks)."""
    det = detector or streamdet.Detector(model, device="cpu", threads=1)

    def factory(hop: float, lookahead: float, thresholds: dict, classes: tuple[str, ...] | None) -> Any:
        return streamdet.Detector(model, device="cpu", hop=hop, lookahead=lookahead, thresholds=thresholds,
                                  threads=1, classes=list(classes) if classes else None)

    limits = ServeSettings(**settings)
    app = create_app(DetectorPool(det, factory, limits.max_detectors), limits)
    with background_server(app, limits, sock=sock) as url:
        yield url, app.state.serve


def ws_url(url: str, query: str = "") -> str:
    """The stream endpoint of the server at ``url``."""
    return url.replace("http://", "ws://") + "/v1/stream" + query


def open_raw(url: str, query: str = "", **kwargs: Any) -> ClientConnection:
    """A plain WebSocket connection to ``/v1/stream`` (nothing sent yet)."""
    return open_websocket(ws_url(url, query), open_timeout=20, close_timeout=5, **kwargs)


def drain(ws: ClientConnection, timeout: float = 20) -> list[dict[str, Any]]:
    """Every JSON message until the server closes the connection."""
    out = []
    while True:
        try:
            out.append(json.loads(ws.recv(timeout)))
        except ConnectionClosed:
            return out


def refused(url: str, first: str | bytes | None, query: str = "", **kwargs: Any) -> tuple[int | None, list]:
    """Open a stream, send ``first`` (when given) and return (close code, messages received)."""
    ws = open_raw(url, query, **kwargs)
    if first is not None:
        with contextlib.suppress(ConnectionClosed):  # the server may refuse before reading it
            ws.send(first)
    messages = drain(ws)
    return ws.close_code, messages


START = json.dumps({"sample_rate": 16000, "channels": 1, "format": "f32le", "name": "t"})


class SilentReader:
    """A WebSocket client on a raw socket (websockets' sans-I/O protocol) that sends without reading anything
    until :meth:`read_all`, with a small receive buffer: a client that reads slowly. (The threaded client of
    ``websockets`` stops sending too while its receive queue is full, so it cannot play this part.)"""

    def __init__(self, url: str, rcvbuf: int = 4096) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.protocol = ClientProtocol(parse_uri(ws_url(url)))
        host, port = url.split("//")[1].split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((host, int(port)))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while not self.protocol.handshake_exc and self.protocol.state.name == "CONNECTING":
            self.protocol.receive_data(self.sock.recv(65536))
        self.pending = list(self.protocol.events_received())

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def send(self, message: str | bytes) -> None:
        """Send one text (str) or binary (bytes) message."""
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        self._flush()

    def read_all(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Now read: every JSON message until the server closes; ``close_code`` is set."""
        self.sock.settimeout(timeout)
        messages = []
        while True:
            for event in [*self.pending, *self.protocol.events_received()]:
                if getattr(event, "opcode", None) is not None and event.opcode.name == "TEXT":
                    messages.append(json.loads(event.data))
            self.pending = []
            self._flush()  # the answer to the server's close frame
            if self.protocol.state.name == "CLOSED" or self.protocol.close_expected():
                break
            data = self.sock.recv(65536)
            if not data:
                self.protocol.receive_eof()
                break
            self.protocol.receive_data(data)
        self.close_code = self.protocol.close_rcvd.code if self.protocol.close_rcvd else None
        self.sock.close()
        return messages
