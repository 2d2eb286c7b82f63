"""``POST /v1/detect``: the events of one uploaded audio file, exactly as ``streamdet file`` finds them.

The body is the file itself (any format libsndfile reads) or a multipart form with the field ``file``;
the query may set ``hop``, ``lookahead``, ``threshold`` (``ON`` or ``ON,OFF``) and ``classes`` (some of the
server's labels, comma-separated: only their events come back). The file is spooled to
a temporary file and run through :meth:`Detector.detect_file` (the same engine call as ``streamdet
file``) in the server's file worker thread. Errors are JSON ``{"error": ...}``: 400 bad request or audio
that cannot be decoded, 401 without the token, 413 over the body limit, 415 a text or JSON content type or an
audio format libsndfile does not recognise, 503 when the detector settings asked for cannot be served now.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..audio_io import AudioFileError
from .context import ServerContext
from .detectors import PoolFullError

REFUSED_TYPES = ("text/", "application/json", "application/xml")  # anything else may be audio: libsndfile decides
UNRECOGNISED = "Format not recognised"
CHUNK = 1 << 16


class HTTPProblemError(Exception):
    """A request that gets a JSON error: ``status`` and ``message``; ``kind`` is the metrics label."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def problem_response(exc: HTTPProblemError, ctx: ServerContext) -> JSONResponse:
    """The JSON error response of ``exc`` (counted in the errors metric)."""
    ctx.metrics.error(exc.kind)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def parse_threshold(text: str | None) -> float | tuple[float, float] | None:
    """``threshold=ON`` or ``ON,OFF`` from the query (400 when malformed)."""
    if text is None or text == "":
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise HTTPProblemError(400, "bad_query", f"threshold: expected ON or ON,OFF (numbers in [0, 1]), got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _query_seconds(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise HTTPProblemError(400, "bad_query", f"{name}: expected a number of seconds, got {text!r}") from None


async def detect_endpoint(request: Request) -> JSONResponse:
    """``POST /v1/detect`` → ``{"duration": s, "events": [{"label", "onset", "offset", "confidence"}]}``."""
    ctx: ServerContext = request.app.state.serve
    if not ctx.authorized(request):
        return problem_response(HTTPProblemError(401, "unauthorized", "missing or wrong token: send the header "
                                            "'Authorization: Bearer <token>'"), ctx)
    path = None
    try:
        hop, lookahead = _query_seconds(request, "hop"), _query_seconds(request, "lookahead")
        threshold = parse_threshold(request.query_params.get("threshold"))
        classes = request.query_params.get("classes")
        try:
            ctx.pool.resolve_classes(classes)  # a bad name is a 400 before the upload is read
        except ValueError as exc:
            raise HTTPProblemError(400, "bad_query", str(exc)) from None
        path, name = await _spool_body(request, ctx.settings.max_body_bytes)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(ctx.files, _detect, ctx, path, name, hop, lookahead, threshold, classes)
    except HTTPProblemError as exc:
        return problem_response(exc, ctx)
    finally:
        if path is not None:
            os.unlink(path)
    return JSONResponse(result)


def _detect(ctx: ServerContext, path: str, name: str, hop: float | None, lookahead: float | None,
            threshold: Any, classes: str | None = None) -> dict[str, Any]:
    """In the file worker: detect with the detector for these settings; the answer of the endpoint."""
    try:
        det = ctx.pool.acquire(hop, lookahead, threshold, classes)
    except PoolFullError as exc:
        raise HTTPProblemError(503, "too_many_settings", str(exc)) from None
    except ValueError as exc:
        raise HTTPProblemError(400, "bad_query", str(exc)) from None
    try:
        run = det.open_file(path, name=name)
        run.run()
    except AudioFileError as exc:
        status, kind = (415, "unsupported_audio") if UNRECOGNISED in exc.reason else (400, "bad_audio")
        raise HTTPProblemError(status, kind, f"{name}: {exc.reason}") from None
    finally:
        ctx.pool.release(det)
    ctx.metrics.files.inc()
    ctx.metrics.audio_seconds.labels(source="file").inc(run.duration)
    ctx.metrics.windows.labels(source="file").inc(run.stream.windows)
    events = sorted(run.events, key=lambda e: (e.onset, e.offset, e.label))
    for ev in events:
        ctx.metrics.events.labels(label=ev.label).inc()
    return {"duration": run.duration,
            "events": [{"label": e.label, "onset": round(e.onset, 6), "offset": round(float(e.offset or 0.0), 6),
                        "confidence": round(e.confidence, 4)} for e in events]}


async def _spool_body(request: Request, limit: int) -> tuple[str, str]:
    """Write the audio of the request (raw body or multipart field ``file``) to a temporary file, at most
    ``limit`` bytes; return its path and the name to report it by."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPProblemError(413, "body_too_large", f"the body of {int(declared)} bytes is over the limit of "
                                                 f"{limit} bytes")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fd, path = tempfile.mkstemp(prefix="streamdet-", suffix=".audio")
    try:
        with os.fdopen(fd, "wb") as out:
            if content_type == "multipart/form-data":
                name = await _copy_multipart(request, out, limit)
            elif content_type.startswith(REFUSED_TYPES):
                raise HTTPProblemError(415, "unsupported_media", f"unsupported content type {content_type!r}: send the "
                                       "audio file as the body (audio/*, application/octet-stream) or as the "
                                       "multipart/form-data field 'file'")
            else:  # audio/*, application/octet-stream, none, or curl's default x-www-form-urlencoded
                name = "body"
                await _copy_stream(_limited(request.stream(), limit), out)
            if out.tell() == 0:
                raise HTTPProblemError(400, "empty_body", f"{name}: empty (0 bytes): send an audio file")
    except BaseException:
        os.unlink(path)
        raise
    return path, name


async def _limited(chunks: Any, limit: int) -> Any:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise HTTPProblemError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
        yield chunk


async def _copy_stream(chunks: Any, out: Any) -> None:
    async for chunk in chunks:
        out.write(chunk)


async def _copy_multipart(request: Request, out: Any, limit: int) -> str:
    limited = Request(request.scope, receive=_limited_receive(request.receive, limit))
    try:
        form = await limited.form(max_files=1, max_fields=16)
    except HTTPProblemError:
        raise
    except Exception as exc:  # starlette's MultiPartException and parser errors
        raise HTTPProblemError(400, "bad_multipart", f"malformed multipart body: {exc}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPProblemError(400, "no_file_field", "the multipart body has no file field named 'file'")
    while chunk := await upload.read(CHUNK):
        out.write(chunk)
    await form.close()
    return upload.filename or "file"


def _limited_receive(receive: Any, limit: int) -> Any:
    total = 0

    async def wrapped() -> Any:
        nonlocal total
        message = await receive()
        total += len(message.get("body", b""))
        if total > limit:
            raise HTTPProblemError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
        return message

    return wrapped
