"""``streamdet serve``: detection as a network service (HTTP + WebSocket) with a live web page.

The server itself lives in :mod:`streamdet.serve` and is imported only here, inside the command, so that
``import streamdet`` and the other commands never need the ``serve`` extra. The model and post-processing
options are those of ``streamdet file`` (same helpers, same meaning); ``STREAMDET_TOKEN`` in the environment
means ``--token``. Exit 0 on a normal stop, 130 on Ctrl-C, 1 when the port cannot be used, 2 on usage errors.
"""

from __future__ import annotations

from typing import Any

import typer

from .common import fail, load_detector, model_line
from .options import DeviceOption, ModelOption, with_detection_options


@with_detection_options
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default; 0.0.0.0 "
                                                          "for every interface)."),
    port: int = typer.Option(8765, "--port", help="TCP port (0: any free port)."),
    model: ModelOption = None,
    token: str | None = typer.Option(None, "--token", envvar="STREAMDET_TOKEN", show_envvar=True,
                                     help="Require 'Authorization: Bearer TOKEN' (WebSocket and page: or "
                                          "?token=TOKEN) on every endpoint but /healthz.", show_default=False),
    max_streams: int = typer.Option(16, "--max-streams", help="Most WebSocket streams open at once."),
    max_frame: int = typer.Option(1 << 20, "--max-frame", help="Largest WebSocket message, bytes."),
    max_body: int = typer.Option(100 << 20, "--max-body", help="Largest POST /v1/detect body, bytes."),
    idle_timeout: float = typer.Option(30.0, "--idle-timeout", help="Close a stream that sends nothing for this "
                                                                    "many seconds."),
    send_queue: int = typer.Option(64, "--send-queue", help="Messages queued for a slow client before its "
                                                            "'scores' messages are dropped (updates never are)."),
    batch_interval: float = typer.Option(0.05, "--batch-interval", help="Seconds between inference rounds: the "
                                         "windows of all streams due within one run as one batch."),
    device: DeviceOption = "auto",
    *,
    settings: dict[str, Any],
) -> None:
    """Serve detection over HTTP and WebSocket, with a live web page at /.

    Endpoints: GET / (page), GET /healthz, GET /v1/models, POST /v1/detect, WebSocket /v1/stream,
    GET /metrics. The protocol is in docs/serve.md. Ctrl-C stops it (exit 130)."""
    try:
        from ..serve import DetectorPool, ServeSettings, create_app
        from ..serve.server import bind, make_server
    except ImportError as exc:
        fail(str(exc) if "streamdet[serve]" in str(exc) else f"{exc}; install the serve extra: "
             'pip install "streamdet[serve]"', 2)
    try:
        serve_settings = ServeSettings(token=token or None, max_streams=max_streams, max_frame_bytes=max_frame,
                                 max_body_bytes=max_body, idle_timeout=idle_timeout, send_queue=send_queue,
                                 batch_interval=batch_interval)
    except ValueError as exc:
        fail(str(exc).replace("max_", "--max-").replace("_", "-"), 2)
    det = load_detector(model, device, settings)
    median_filter = settings["median_filter"]

    def factory(h: float, la: float, th: dict) -> object:
        from ..detector import Detector

        return Detector(det.session.path, device=device, hop=h, lookahead=la, thresholds=th,
                        median_filter=median_filter, min_duration=det.min_duration, min_gap=det.min_gap,
                        threads=settings["threads"], label_map=det.label_map)

    pool = DetectorPool(det, factory, limit=serve_settings.max_detectors, median_filter=median_filter)
    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(model_line(det), err=True)
    typer.echo(f"serving on http://{shown}:{bound}/ (web page), ws://{shown}:{bound}/v1/stream; "
               f"{'token required' if serve_settings.token else 'no token'}; up to {max_streams} streams "
               "(Ctrl-C to stop)", err=True)
    server = make_server(create_app(pool, serve_settings), serve_settings)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        sock.close()
        det.close()
