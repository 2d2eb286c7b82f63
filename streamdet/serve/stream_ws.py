"""The ``/v1/stream`` WebSocket endpoint: one connection is one stream (protocol in docs/serve.md).

Order of a connection: authenticate (close 1008), take a stream slot (close 1013 when all are taken), read
the start message, get the detector for its settings, answer ``ready``, then read PCM frames and control
messages until ``end`` (open events are closed and sent, close 1000), a fault (an error message and its
close code), the idle timeout, or the client vanishing. Everything the server says goes through the
client's bounded :class:`~.send_queue.SendQueue`, written to the socket by a sender task of its own, so a
slow reader never holds up inference or the other streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from .context import ServerContext
from .detectors import PoolFullError, model_info
from .protocol import (
    INTERNAL,
    INVALID_DATA,
    NORMAL,
    POLICY,
    TOO_BIG,
    TRY_LATER,
    UNSUPPORTED_DATA,
    ProtocolError,
    StartRequest,
    count_nonfinite,
    decode_frames,
    error_message,
    parse_json_object,
    parse_start,
)
from .send_queue import SendQueue

if TYPE_CHECKING:
    from .hub import StreamSession

CLOSE_WAIT_SECONDS = 10.0  # how long the queue may take to reach a closing client before the socket is closed


class ClientGoneError(Exception):
    """The client disconnected (closed, or vanished) before ending its stream."""


async def stream_endpoint(ws: WebSocket) -> None:
    """Serve one stream on ``ws`` (the ASGI WebSocket route ``/v1/stream``)."""
    ctx: ServerContext = ws.app.state.serve
    await ws.accept()
    connection = Connection(ws, ctx)
    if not ctx.authorized(ws, allow_query=True):
        await connection.refuse(ProtocolError(POLICY, "unauthorized", "missing or wrong token: send the header "
                                              "'Authorization: Bearer <token>' or the query ?token=<token>"))
        return
    if ctx.connections >= ctx.settings.max_streams:
        await connection.refuse(ProtocolError(TRY_LATER, "too_many_streams", f"the server already serves its "
                                              f"limit of {ctx.settings.max_streams} streams; try again later"))
        return
    ctx.connections += 1
    try:
        await connection.run()
    finally:
        ctx.connections -= 1


class Connection:
    """One stream's connection: reader (this coroutine) and sender (a task writing the queue)."""

    def __init__(self, ws: WebSocket, ctx: ServerContext) -> None:
        self.ws = ws
        self.ctx = ctx
        self.queue = SendQueue(ctx.settings.send_queue,
                               on_drop=lambda m: ctx.metrics.dropped.labels(type=m.get("type", "?")).inc())
        self.sender = asyncio.get_running_loop().create_task(self._send_loop())
        self.session: StreamSession | None = None
        self.warned_nonfinite = False

    async def refuse(self, error: ProtocolError) -> None:
        """Close at once with ``error`` (before any stream was opened)."""
        self.ctx.metrics.error(error.kind)
        await self.close(error.code, error.message)

    async def run(self) -> None:
        """Read the start message and then the stream until it ends; close with the right code."""
        try:
            start = parse_start(await self._receive_text("the start message"))
            detector = await self._detector(start)
            try:
                stream = detector.stream(start.sample_rate, start.channels, name=start.name)
                hub = self.ctx.hub
                assert hub is not None, "the hub starts with the app"
                publisher = self.ctx.publisher
                if publisher is not None:
                    publisher.add_stream(start.name)
                self.session = hub.open(detector, stream, self._deliver, start.scores, publisher)
                self.queue.put({"type": "ready", "stream": start.name,
                                **model_info(detector, self.ctx.pool.median_filter)})
                await self._read_stream(start)
            finally:
                if self.session is not None:
                    self.ctx.hub.remove(self.session)  # type: ignore[union-attr]
                    self.session = None
                self.ctx.pool.release(detector)
        except ProtocolError as exc:
            self.ctx.metrics.error(exc.kind)
            await self.close(exc.code, exc.message)
        except ClientGoneError:
            self.ctx.metrics.error("vanished")
            self.sender.cancel()

    async def _detector(self, start: StartRequest) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self.ctx.pool.acquire, start.hop, start.lookahead,
                                              start.thresholds, start.classes)
        except PoolFullError as exc:
            raise ProtocolError(TRY_LATER, "too_many_settings", str(exc)) from None
        except ValueError as exc:
            raise ProtocolError(INVALID_DATA, "bad_settings", str(exc)) from None

    async def _read_stream(self, start: StartRequest) -> None:
        hub, session = self.ctx.hub, self.session
        assert hub is not None and session is not None
        while True:
            message = await self._receive()
            data = message.get("bytes")
            if data is not None:
                frames = decode_frames(data, start)
                bad = count_nonfinite(frames)
                if bad:
                    self.ctx.metrics.error("nonfinite")
                    if not self.warned_nonfinite:
                        self.warned_nonfinite = True
                        self.queue.put({"type": "warning", "message": f"{bad} NaN/inf sample(s) replaced by 0 "
                                                                      "(told once per stream)"})
                await hub.feed(session, frames)
            else:
                request = parse_json_object(message.get("text") or "")
                kind = request.get("type")
                if kind == "end":
                    await hub.end(session)
                    await self.close(NORMAL)
                    return
                if kind == "lost":
                    hub.lost(session, _lost_frames(request))
                else:
                    raise ProtocolError(UNSUPPORTED_DATA, "unknown_message", f"unknown message type "
                                        f"{json.dumps(kind)}: expected end or lost (audio goes in binary messages)")
            if self.queue.overflowed:
                raise ProtocolError(POLICY, "slow_reader", f"the client reads too slowly: {len(self.queue)} "
                                    "messages are waiting for it")

    async def _receive(self) -> dict[str, Any]:
        """The next message within the idle timeout; over-size messages are refused."""
        limits = self.ctx.settings
        try:
            message = await asyncio.wait_for(self.ws.receive(), limits.idle_timeout)
        except asyncio.TimeoutError:
            raise ProtocolError(POLICY, "idle_timeout", f"no message for {limits.idle_timeout:g} s "
                                "(idle timeout)") from None
        if message["type"] == "websocket.disconnect":
            if message.get("code") == TOO_BIG:  # the server (uvicorn's ws_max_size) refused a message
                self.ctx.metrics.error("frame_too_large")
            raise ClientGoneError(message.get("code"))
        payload = message.get("bytes") if message.get("bytes") is not None else message.get("text") or ""
        if len(payload) > limits.max_frame_bytes:
            raise ProtocolError(TOO_BIG, "frame_too_large", f"a message of {len(payload)} bytes is over the "
                                f"limit of {limits.max_frame_bytes} bytes")
        return message

    async def _receive_text(self, what: str) -> str:
        message = await self._receive()
        if message.get("text") is None:
            raise ProtocolError(UNSUPPORTED_DATA, "binary_start", f"expected {what} as a JSON text message, "
                                "got a binary message")
        return message["text"]

    def _deliver(self, message: dict[str, Any]) -> None:
        """From the hub: an update or scores message; an error means inference failed (close 1011)."""
        if message.get("type") == "error":
            self.queue.put(message)
            self.queue.put({"type": "_close", "code": INTERNAL, "reason": "inference failed"})
        else:
            self.queue.put(message)

    async def close(self, code: int, message: str | None = None) -> None:
        """Send ``message`` as an error (when given), then whatever is queued, then close with ``code``."""
        if message is not None:
            self.queue.put(error_message(message))
        self.queue.put({"type": "_close", "code": code, "reason": (message or "")[:100]})
        try:
            await asyncio.wait_for(asyncio.shield(self.sender), CLOSE_WAIT_SECONDS)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self.sender.cancel()
            await self._close_socket(code, "closing")

    async def _send_loop(self) -> None:
        while True:
            message = await self.queue.get()
            if message.get("type") == "_close":
                await self._close_socket(message["code"], message["reason"])
                return
            try:
                await self.ws.send_text(json.dumps(message))
            except Exception:  # the client is gone; the reader learns it from receive()
                return

    async def _close_socket(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason.encode()[:120].decode(errors="ignore"))


def _lost_frames(request: dict[str, Any]) -> int:
    frames = request.get("frames")
    if isinstance(frames, bool) or not isinstance(frames, int) or not 0 <= frames <= 10**10:
        raise ProtocolError(INVALID_DATA, "bad_lost", f"lost needs frames: a count >= 0, got {json.dumps(frames)}")
    return frames
