"""``streamdet serve``: detection as a network service (HTTP + WebSocket) with a live web page.

The server itself lives in :mod:`streamdet.serve` and is imported only here, inside the command, so that
``import streamdet`` and the other commands never need the ``serve`` extra. The model and post-processing
options are those of ``streamdet file`` (same helpers, same meaning); ``STREAMDET_TOKEN`` in the environment
means ``--token``. ``--mqtt`` publishes every WebSocket stream's onsets and offsets as ``listen --mqtt`` does
(the stream named by its start message). Exit 0 on a normal stop, 130 on Ctrl-C, 1 when the port cannot be used,
2 on usage errors.
"""

from __future__ import annotations

from typing import Any

import typer

from . import listen_sources
from .common import connect_ray, fail, load_detector, model_line
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
    mqtt: str | None = typer.Option(None, "--mqtt", help=listen_sources.MQTT_HELP, show_default=False),
    mqtt_prefix: str = typer.Option("streamdet", "--mqtt-prefix", help=listen_sources.MQTT_PREFIX_HELP),
    discovery_prefix: str = typer.Option("homeassistant", "--mqtt-discovery-prefix",
                                         help=listen_sources.DISCOVERY_HELP),
    ray_address: str | None = typer.Option(None, "--ray", help="Deploy on Ray Serve: 'local' starts a cluster on "
                                           "this machine, else the address of a running one (auto, HOST:PORT), as "
                                           "in `batch`. --max-streams is then per replica.", show_default=False),
    replicas: int = typer.Option(1, "--replicas", help="Ray Serve replicas (with --ray), each with its own model."),
    *,
    settings: dict[str, Any],
) -> None:
    """Serve detection over HTTP and WebSocket, with a live web page at /.

    Endpoints: GET / (page), GET /healthz, GET /v1/models, POST /v1/detect, WebSocket /v1/stream,
    GET /metrics. The protocol is in docs/serve.md. Ctrl-C stops it (exit 130)."""
    try:
        from ..serve import ServeSettings, create_app
        from ..serve.detectors import make_pool
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
    listen_sources.check_mqtt(mqtt)
    if replicas < 1:
        fail(f"--replicas must be at least 1, got {replicas}", 2)
    if ray_address is not None and mqtt:
        fail("--mqtt is not supported with --ray yet (each replica would publish its own streams): run the "
             "replicas without --mqtt, or serve without --ray", 2)
    det = load_detector(model, device, settings)
    if ray_address is not None:
        _serve_on_ray(ray_address, replicas, host, port, det, device, settings, serve_settings)
        return
    pool = make_pool(det, device, settings["median_filter"], settings["threads"], serve_settings.max_detectors)
    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(model_line(det), err=True)
    publisher = listen_sources.open_publisher(mqtt, det, [], mqtt_prefix, discovery_prefix)
    typer.echo(f"serving on http://{shown}:{bound}/ (web page), ws://{shown}:{bound}/v1/stream; "
               f"{'token required' if serve_settings.token else 'no token'}; up to {max_streams} streams "
               "(Ctrl-C to stop)", err=True)
    server = make_server(create_app(pool, serve_settings, publisher), serve_settings)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        sock.close()
        det.close()
        listen_sources.close_publisher(publisher)


def _serve_on_ray(address: str, replicas: int, host: str, port: int, det: Any, device: str,
                  settings: dict[str, Any], serve_settings: Any) -> None:
    """Deploy the app on Ray Serve and wait for Ctrl-C (then delete it; exit 130)."""
    import time

    from ..scale.runtime import DetectorSpec

    if port == 0:
        fail("--port 0 is not supported with --ray: Ray Serve's proxy needs a fixed port", 2)
    threads = settings["threads"] or 1
    ray = connect_ray(address, "streamdet serve --ray")
    try:
        from ..scale.ray_serve import deploy, undeploy

        spec = DetectorSpec.from_path(det.session.path, device, {**settings, "threads": threads})
        typer.echo(model_line(det), err=True)
        try:
            deploy(spec, serve_settings, replicas, threads, host, port)
        except Exception as exc:  # Ray Serve's own errors (port in use, not enough CPUs) are many kinds
            fail(f"cannot deploy on Ray Serve: {exc}", 1)
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"serving on http://{shown}:{port}/ via Ray Serve, {replicas} replica(s) x {threads} thread(s); "
                   f"ws://{shown}:{port}/v1/stream; up to {serve_settings.max_streams} streams per replica "
                   "(Ctrl-C to stop)", err=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            undeploy(stop_serve=address == "local")
            raise typer.Exit(130) from None
    finally:
        det.close()
        ray.shutdown()
