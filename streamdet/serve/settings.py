"""The server's limits and access settings (``streamdet serve`` options), one frozen object."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """Limits and access of one server.

    Attributes:
        token: the bearer token every endpoint but ``/healthz`` needs; None: no authentication.
        max_streams: most WebSocket streams open at once (more are closed with code 1013).
        max_frame_bytes: largest binary (audio) or text message on a stream (larger: close 1009).
        max_body_bytes: largest ``POST /v1/detect`` body (larger: 413).
        idle_timeout: seconds a stream may send nothing before it is closed (1008).
        send_queue: messages queued for one client before ``scores`` messages are dropped (updates never are).
        max_pending_seconds: audio of one stream waiting for inference before the server stops reading
            from that client (TCP back-pressure) until inference catches up.
        max_detectors: most distinct stream/detect settings (hop, lookahead, thresholds) served at once; each
            needs its own model session.
        batch_interval: seconds between inference rounds at the most: audio of every stream that arrives within
            one interval is pushed together, so the windows that fall due in it run as one batch (adds up to
            this much latency).
    """

    token: str | None = None
    max_streams: int = 16
    max_frame_bytes: int = 1 << 20
    max_body_bytes: int = 100 << 20
    idle_timeout: float = 30.0
    send_queue: int = 64
    max_pending_seconds: float = 10.0
    max_detectors: int = 4
    batch_interval: float = 0.05

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_frame_bytes", "max_body_bytes", "send_queue", "max_detectors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.batch_interval >= 0:
            raise ValueError(f"batch_interval must be >= 0, got {self.batch_interval}")
        for name in ("idle_timeout", "max_pending_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
