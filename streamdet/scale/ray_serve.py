"""``streamdet serve --ray``: the ASGI app of ``streamdet serve`` deployed with Ray Serve, N replicas.

Each replica builds its own Detector (the model's bytes travel with the deployment, so replicas on other
machines need no copy) and its own app with :func:`streamdet.serve.create_app`, the app ``streamdet serve``
runs on uvicorn: the same routes, protocol, limits and token. Ray Serve's proxy routes every request to one
replica: a WebSocket stream lives on the replica that accepted it for its whole life (its state stays there),
``POST /v1/detect`` requests are spread over the replicas, and ``/metrics`` answers with the metrics of the
replica that took the request (``streamdet_replica_info{replica=...}`` and the ``X-Streamdet-Replica`` header
say which). The app is built on the replica through Ray Serve's late-bound ingress (``__serve_build_asgi_app__``).

Importing this module imports Ray (the ``ray`` extra); ``streamdet serve`` imports it only with ``--ray``.
"""

from __future__ import annotations

import shutil
from typing import Any

from ray import serve

from ..serve.settings import ServeSettings
from .runtime import DetectorSpec

APP_NAME = "streamdet"
HTTP_HEADROOM = 16  # requests a replica takes beside its streams (HTTP detection, metrics, health checks)


@serve.ingress()
class StreamdetReplica:
    """One replica: a Detector, its pool and the ``streamdet serve`` app around them."""

    def __init__(self, spec: DetectorSpec, settings: ServeSettings, threads: int) -> None:
        self.spec, self.settings, self.threads = spec, settings, threads
        self.detector: Any = None
        self._model_folder = ""

    def __serve_build_asgi_app__(self) -> Any:
        """The replica's app (called by Ray Serve once the replica is constructed)."""
        from ..serve import create_app
        from ..serve.detectors import make_pool

        self.detector, self._model_folder = self.spec.build(self.threads)
        replica = serve.get_replica_context().replica_id.unique_id
        pool = make_pool(self.detector, self.spec.device, self.spec.settings.get("median_filter", 0.0),
                         self.threads, self.settings.max_detectors)
        return create_app(pool, self.settings, replica=replica)

    def __del__(self) -> None:
        if getattr(self, "detector", None) is not None:
            self.detector.close()
        shutil.rmtree(getattr(self, "_model_folder", ""), ignore_errors=True)


def deploy(spec: DetectorSpec, settings: ServeSettings, replicas: int, threads: int, host: str, port: int,
           num_gpus: float = 0.0) -> None:
    """Start Ray Serve's proxy on ``host:port`` (when Serve is not running yet) and deploy ``replicas`` replicas
    of ``threads`` CPUs (and ``num_gpus``) each as the application ``streamdet`` on ``/``; returns once every
    replica serves."""
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(
        StreamdetReplica, name="streamdet", num_replicas=replicas,
        ray_actor_options={"num_cpus": threads, "num_gpus": num_gpus},
        max_ongoing_requests=settings.max_streams + HTTP_HEADROOM,  # a stream is one long request
        max_queued_requests=-1)
    serve.run(deployment.bind(spec, settings, threads), name=APP_NAME, route_prefix="/", blocking=False)


def undeploy(stop_serve: bool) -> None:
    """Delete the application (and stop Ray Serve altogether when ``stop_serve``: a cluster this command
    started)."""
    if stop_serve:
        serve.shutdown()
    else:
        serve.delete(APP_NAME)
