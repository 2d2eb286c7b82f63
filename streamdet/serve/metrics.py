"""The server's Prometheus metrics (prometheus_client), in a registry of their own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Open streams, audio received, windows and batches, inference time, lost audio, events, errors, drops."""

    def __init__(self, replica: str | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        if replica is not None:  # one of several replicas (Ray Serve): each exposes its own counts, labelled
            Gauge("streamdet_replica_info", "The replica these metrics are of", ["replica"],
                  registry=r).labels(replica=replica).set(1)
        self.open_streams = Gauge("streamdet_open_streams", "WebSocket streams open now", registry=r)
        self.audio_seconds = Counter("streamdet_audio_seconds", "Seconds of audio received", ["source"], registry=r)
        self.windows = Counter("streamdet_windows", "Windows evaluated", ["source"], registry=r)
        self.batches = Counter("streamdet_batches", "Batched inference calls made for streams", registry=r)
        self.inference = Histogram("streamdet_inference_seconds", "Time of one inference round over every "
                                   "stream's due windows (in batches of at most the model's batch limit)",
                                   buckets=INFERENCE_BUCKETS, registry=r)
        self.lost_seconds = Counter("streamdet_lost_audio_seconds", "Seconds of audio that clients reported lost",
                                    registry=r)
        self.events = Counter("streamdet_events", "Events detected", ["label"], registry=r)
        self.errors = Counter("streamdet_errors", "Rejected requests and closed streams", ["kind"], registry=r)
        self.dropped = Counter("streamdet_dropped_messages", "Messages dropped for slow readers", ["type"],
                               registry=r)
        self.files = Counter("streamdet_files", "Files detected through /v1/detect", registry=r)

    def error(self, kind: str) -> None:
        """Count one error of ``kind``."""
        self.errors.labels(kind=kind).inc()

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
