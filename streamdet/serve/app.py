"""The ASGI app of ``streamdet serve`` (Starlette): routes, authentication, the page, and the hub's lifetime.

| route | what |
|---|---|
| ``GET /`` | the live web page (``static/index.html``; with a token: the header or ``?token=``) |
| ``GET /healthz`` | ``{"status": "ok", "model", "streams"}`` (and ``replica`` on Ray Serve); never needs the token |
| ``GET /v1/models`` | the served model: labels, rates, window, step, hop, lookahead, thresholds, post-processing |
| ``POST /v1/detect`` | events of an uploaded file (:mod:`.detect_http`) |
| ``WS /v1/stream`` | a live stream (:mod:`.stream_ws`) |
| ``GET /metrics`` | Prometheus text (:mod:`.metrics`) |
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

from .context import ServerContext
from .detect_http import detect_endpoint
from .detectors import DetectorPool, model_info
from .hub import InferenceHub
from .metrics import ServerMetrics
from .settings import ServeSettings
from .stream_ws import stream_endpoint

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def page_html() -> str:
    """The web page shipped in the package (plain HTML with its CSS and JavaScript inline)."""
    return resources.files("streamdet.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def _unauthorized(ctx: ServerContext, what: str) -> JSONResponse:
    ctx.metrics.error("unauthorized")
    return JSONResponse({"error": f"missing or wrong token: send the header 'Authorization: Bearer <token>'{what}"},
                        status_code=401)


async def healthz(request: Request) -> JSONResponse:
    """``GET /healthz``: liveness, the model's name and the number of open streams (no token needed)."""
    ctx: ServerContext = request.app.state.serve
    hub = ctx.hub
    body = {"status": "ok", "model": ctx.pool.default.session.path.stem,
            "streams": len(hub.sessions) if hub is not None else 0}
    if ctx.replica is not None:
        body["replica"] = ctx.replica
    return JSONResponse(body)


async def models(request: Request) -> JSONResponse:
    """``GET /v1/models``: what the served model is and how it is post-processed."""
    ctx: ServerContext = request.app.state.serve
    if not ctx.authorized(request):
        return _unauthorized(ctx, "")
    return JSONResponse({"models": [model_info(ctx.pool.default, ctx.pool.median_filter)]})


async def metrics(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text exposition."""
    ctx: ServerContext = request.app.state.serve
    if not ctx.authorized(request):
        return _unauthorized(ctx, "")
    headers = {"X-Streamdet-Replica": ctx.replica} if ctx.replica is not None else None
    return Response(ctx.metrics.exposition(), media_type=PROMETHEUS_TEXT, headers=headers)


async def page(request: Request) -> Response:
    """``GET /``: the live web page (a browser passes the token as ``?token=``)."""
    ctx: ServerContext = request.app.state.serve
    if not ctx.authorized(request, allow_query=True):
        ctx.metrics.error("unauthorized")
        return PlainTextResponse("401: this server needs its token: open /?token=<token>", status_code=401)
    return HTMLResponse(page_html(), headers={"Cache-Control": "no-store"})


def create_app(pool: DetectorPool, settings: ServeSettings | None = None, publisher: Any = None,
               replica: str | None = None) -> Starlette:
    """The ASGI app serving ``pool``'s detectors under ``settings`` (limits and token). ``publisher``: an update
    sink with ``add_stream(name)`` (an :class:`~streamdet.integrations.mqtt.MqttPublisher`) that gets every
    stream's onsets and offsets, the stream named as its start message names it. ``replica`` names the server
    when it is one of several (``/healthz`` says it, ``/metrics`` labels its counts with it)."""
    ctx = ServerContext(pool=pool, settings=settings or ServeSettings(), publisher=publisher,
                        metrics=ServerMetrics(replica), replica=replica)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx.hub = InferenceHub(ctx.metrics, ctx.settings.max_pending_seconds, ctx.settings.batch_interval)
        ctx.hub.start()
        try:
            yield
        finally:
            await ctx.hub.stop()
            ctx.files.shutdown(wait=False, cancel_futures=True)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/healthz", healthz),
            Route("/v1/models", models),
            Route("/v1/detect", detect_endpoint, methods=["POST"]),
            Route("/metrics", metrics),
            WebSocketRoute("/v1/stream", stream_endpoint),
        ],
        lifespan=lifespan,
    )
    app.state.serve = ctx
    return app
