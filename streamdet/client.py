"""A small Python client of ``streamdet serve``'s WebSocket protocol (``/v1/stream``, docs/serve.md).

Needs the ``serve`` extra (the ``websockets`` package); ``import streamdet`` never imports this module.

Stream a file or numpy audio and iterate the updates::

    from streamdet.client import stream_file
    for update in stream_file("http://127.0.0.1:8765", "clip.wav"):
        print(update.type, update.label, update.onset)

or drive a connection yourself (send blocks as they come, e.g. from a sound card)::

    with StreamClient("ws://127.0.0.1:8765", sample_rate=48000, channels=2, name="mic") as client:
        client.send(block)            # float [frames, channels] (or int16 with format="s16le")
        ...
        client.end()
        events = [u for u in client.updates()]
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .events import Update

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import ClientConnection, connect
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f'streamdet.client needs the websockets package ({exc}); install the serve extra: '
                      'pip install "streamdet[serve]"') from None

__all__ = ["StreamClient", "StreamError", "open_websocket", "stream", "stream_file", "stream_url"]


def open_websocket(url: str, **options: Any) -> ClientConnection:
    """A connected ``websockets`` sync client connection (the caller closes it); ``options`` go to
    ``websockets.sync.client.connect``. Entered as its context manager, which newer websockets expect."""
    return connect(url, **options).__enter__()


class StreamError(RuntimeError):
    """The server refused or ended the stream with an error: ``message`` and the close ``code``."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(f"{message} (close code {code})" if code else message)
        self.message = message
        self.code = code


def stream_url(url: str, token: str | None = None) -> str:
    """The ``ws(s)://.../v1/stream`` URL for a server given as ``http(s)://host:port`` or ``ws(s)://host:port``
    (a path other than ``/`` is kept); ``token`` goes in the query when given."""
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(http):
            url = ws + url[len(http):]
    if not url.startswith(("ws://", "wss://")):
        url = "ws://" + url
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if not slash or path in ("", "/"):
        path = "v1/stream"
    return f"{scheme}://{host}/{path}" + (f"?token={token}" if token else "")


class StreamClient:
    """One stream on a server: sends the start message on connect, PCM with :meth:`send`, ``end`` with
    :meth:`end`; iterate :meth:`messages` (every JSON message) or :meth:`updates` (onsets and offsets).
    ``ready`` is the server's answer to the start message (labels, rates, thresholds, ...). ``classes`` keeps some
    of the server's labels for this stream (a list, or one comma-separated string)."""

    def __init__(
        self,
        url: str,
        *,
        sample_rate: int,
        channels: int = 1,
        name: str = "client",
        format: str = "f32le",
        token: str | None = None,
        hop: float | None = None,
        lookahead: float | None = None,
        thresholds: Any = None,
        scores: bool = False,
        classes: str | list[str] | None = None,
        open_timeout: float = 30.0,
    ) -> None:
        if format not in ("f32le", "s16le"):
            raise ValueError(f"format must be f32le or s16le, got {format!r}")
        self.format = format
        self.channels = int(channels)
        self.sample_rate = int(sample_rate)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.ws = open_websocket(stream_url(url), additional_headers=headers, open_timeout=open_timeout,
                                 max_size=None, close_timeout=10, compression=None)
        start: dict[str, Any] = {"sample_rate": self.sample_rate, "channels": self.channels, "format": format,
                                 "name": name, "scores": scores}
        for key, value in (("hop", hop), ("lookahead", lookahead), ("thresholds", thresholds), ("classes", classes)):
            if value is not None:
                start[key] = value
        with contextlib.suppress(ConnectionClosed):  # refused before it was read (token, limit): the error is queued
            self.ws.send(json.dumps(start))
        first = self._next()
        if first is None or first.get("type") != "ready":
            self.close()
            raise StreamError(first.get("message", str(first)) if first else "closed before ready", self.close_code)
        self.ready: dict[str, Any] = first

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed (1000 after a normal end)."""
        return self.ws.close_code

    def send(self, samples: np.ndarray) -> None:
        """Send PCM: ``[frames]`` or ``[frames, channels]``; floats go as f32le (or are scaled to s16le), int16
        as it is."""
        x = np.asarray(samples)
        if self.format == "s16le":
            if np.issubdtype(x.dtype, np.floating):
                x = np.clip(np.round(x * 32768.0), -32768, 32767)
            data = x.astype("<i2").tobytes()
        else:
            data = x.astype("<f4").tobytes()
        if data:
            self.ws.send(data)

    def lost(self, frames: int) -> None:
        """Tell the server ``frames`` input frames were lost here (silence on its timeline, counted as lost)."""
        self.ws.send(json.dumps({"type": "lost", "frames": int(frames)}))

    def end(self) -> None:
        """End the stream: the server evaluates the tail, closes the open events, sends them and closes."""
        self.ws.send(json.dumps({"type": "end"}))

    def _next(self, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            return json.loads(self.ws.recv(timeout))
        except ConnectionClosed:
            return None

    def messages(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Every message from the server until it closes (``timeout``: most seconds to wait for each)."""
        while (message := self._next(timeout)) is not None:
            yield message

    def updates(self, timeout: float | None = None) -> Iterator[Update]:
        """The onsets and offsets until the server closes; a server ``error`` raises :class:`StreamError`."""
        for message in self.messages(timeout):
            kind = message.get("type")
            if kind in ("onset", "offset"):
                yield Update(kind, message["label"], message["onset"], message["offset"], message["confidence"],
                             message["stream"], message.get("wall_time"))
            elif kind == "error":
                self.ws.close()
                raise StreamError(message["message"], self.close_code)

    def close(self) -> None:
        """Close the connection (without ending the stream: its open events are dropped)."""
        self.ws.close()

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream(
    url: str,
    source: np.ndarray | Iterable[np.ndarray],
    sample_rate: int,
    *,
    channels: int | None = None,
    block_seconds: float = 0.1,
    realtime: bool = False,
    **options: Any,
) -> Iterator[Update]:
    """Stream numpy audio (one array, cut into ``block_seconds`` blocks, or an iterable of blocks) and yield
    the updates as they come; ``realtime`` paces the sending like a live source. ``options`` go to
    :class:`StreamClient` (``name``, ``token``, ``hop``, ``thresholds``, ``format``, ...)."""
    if isinstance(source, np.ndarray):
        block = max(1, round(block_seconds * sample_rate))
        channels = channels or (1 if source.ndim == 1 else source.shape[1])
        blocks: Iterable[np.ndarray] = (source[i : i + block] for i in range(0, source.shape[0], block))
    else:
        blocks = source
        channels = channels or 1
    client = StreamClient(url, sample_rate=sample_rate, channels=channels, **options)
    failure: list[BaseException] = []

    def sender() -> None:
        t0, sent = time.monotonic(), 0
        try:
            for b in blocks:
                client.send(b)
                sent += np.asarray(b).shape[0]
                if realtime:
                    time.sleep(max(0.0, t0 + sent / sample_rate - time.monotonic()))
            client.end()
        except ConnectionClosed:  # the server closed (an error): the reader reports it
            pass
        except BaseException as exc:
            failure.append(exc)
            client.close()

    thread = threading.Thread(target=sender, daemon=True, name="streamdet-client-send")
    thread.start()
    try:
        yield from client.updates()
    finally:
        client.close()
        thread.join()
    if failure:
        raise failure[0]


def stream_file(url: str, path: str | os.PathLike[str], *, block_seconds: float = 0.1, realtime: bool = False,
                **options: Any) -> Iterator[Update]:
    """Stream an audio file (any format libsndfile reads, at its own rate and channels) and yield the updates."""
    import soundfile as sf

    info = sf.info(str(path))
    block = max(1, round(block_seconds * info.samplerate))
    blocks = sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True)
    options.setdefault("name", os.path.basename(os.fspath(path)))
    yield from stream(url, blocks, int(info.samplerate), channels=info.channels, realtime=realtime, **options)
