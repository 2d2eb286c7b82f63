"""What every endpoint of one server shares: settings, detectors, the inference hub, metrics, stream slots."""

from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from .detectors import DetectorPool
from .hub import InferenceHub
from .metrics import ServerMetrics
from .settings import ServeSettings


@dataclass
class ServerContext:
    """The state of one app (``app.state.serve``)."""

    pool: DetectorPool
    settings: ServeSettings
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    hub: InferenceHub | None = None
    files: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="file"))
    connections: int = 0  # stream slots taken (connections past authentication, before and after their start)
    publisher: Any = None  # an MQTT publisher (streamdet.integrations.mqtt.MqttPublisher) for every stream's updates
    replica: str | None = None  # this server's replica id when it is one of several (Ray Serve)

    def authorized(self, conn: HTTPConnection, allow_query: bool = False) -> bool:
        """Whether the request carries the token (``Authorization: Bearer``; ``?token=`` where allowed)."""
        token = self.settings.token
        if not token:
            return True
        header = conn.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
        query = conn.query_params.get("token") if allow_query else None
        return query is not None and hmac.compare_digest(query.encode(), token.encode())
