"""One shared :class:`~streamdet.Detector` per distinct setting of hop, lookahead, thresholds and classes.

Every stream and file that uses the server's own settings shares the default detector, so windows of
different streams that are due together run as one batch. A client may ask for another hop, lookahead,
thresholds or a subset of the server's classes; a detector with those settings is made once and shared by
everyone who asks for the same,
and dropped when the last of them is done (at most ``limit`` detectors at once, each with its own model
session).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..postprocess import ThresholdSpec, resolve_thresholds

if TYPE_CHECKING:
    from ..detector import Detector

# (hop, lookahead, thresholds, classes or None for all) -> a new Detector with the server's other settings (model,
# device, label map, post-processing).
DetectorFactory = Callable[[float, float, Mapping[str, tuple[float, float]], "tuple[str, ...] | None"], "Detector"]
SettingsKey = tuple[float, float, tuple[tuple[str, tuple[float, float]], ...], "tuple[str, ...] | None"]
Classes = str | Sequence[str] | None


class PoolFullError(RuntimeError):
    """Every detector slot is in use by other settings."""


class DetectorPool:
    """Shared detectors by settings. ``acquire`` / ``release`` in pairs; thread-safe."""

    def __init__(self, default: Detector, factory: DetectorFactory, limit: int = 4,
                 median_filter: float = 0.0) -> None:
        self.default = default
        self.median_filter = float(median_filter)
        self._factory = factory
        self._limit = max(1, int(limit))
        self._lock = threading.Lock()
        self._detectors: dict[SettingsKey, Detector] = {self.key(default.hop, default.lookahead,
                                                                 default.thresholds, None): default}
        self._users: dict[int, int] = {}

    @staticmethod
    def key(hop: float, lookahead: float, thresholds: Mapping[str, tuple[float, float]],
            classes: tuple[str, ...] | None) -> SettingsKey:
        """The identity of a detector's settings."""
        pairs = tuple(sorted((label, (float(on), float(off))) for label, (on, off) in thresholds.items()))
        return (round(float(hop), 9), round(float(lookahead), 9), pairs, classes)

    def resolve_classes(self, classes: Classes) -> tuple[str, ...] | None:
        """The subset of the server's labels a request keeps (a comma-separated string or a list), in the
        server's order; None for all of them. A ValueError names an unknown or repeated label."""
        if classes is None or (isinstance(classes, str) and not classes.strip()):
            return None
        labels = list(self.default.labels)
        if isinstance(classes, str):
            from ..label_map import LabelMapError, split_classes

            try:
                names = split_classes(classes, labels)
            except LabelMapError as exc:
                raise ValueError(str(exc).replace("--classes", "classes")) from None
        elif isinstance(classes, Sequence) and all(isinstance(c, str) for c in classes):
            names = list(classes)
        else:
            raise ValueError("classes must be a list of label names or one comma-separated string")
        unknown = [name for name in names if name not in labels]
        if unknown or not names or len(set(names)) != len(names):
            why = f"unknown label(s) {', '.join(map(repr, unknown))}" if unknown else "a label given twice or none"
            raise ValueError(f"classes: {why}; the server's labels are {', '.join(labels)}")
        chosen = tuple(label for label in labels if label in names)
        return None if chosen == tuple(labels) else chosen

    def resolve(self, hop: float | None, lookahead: float | None, thresholds: ThresholdSpec, classes: Classes = None
                ) -> tuple[float, float, dict[str, tuple[float, float]], tuple[str, ...] | None]:
        """The full settings a request asks for: unset ones are the server's; thresholds override the
        server's per class; ``classes`` keeps some of the server's labels (a ValueError names a bad value or an
        unknown label)."""
        d = self.default
        if hop is not None and not hop > 0:
            raise ValueError(f"hop must be positive, got {hop}")
        if lookahead is not None and not lookahead >= 0:
            raise ValueError(f"lookahead must be >= 0, got {lookahead}")
        merged = resolve_thresholds(d.labels, d.thresholds, thresholds)
        kept = self.resolve_classes(classes)
        if kept is not None:
            merged = {label: pair for label, pair in merged.items() if label in kept}
        return (d.hop if hop is None else float(hop), d.lookahead if lookahead is None else float(lookahead), merged,
                kept)

    def acquire(self, hop: float | None = None, lookahead: float | None = None,
                thresholds: ThresholdSpec = None, classes: Classes = None) -> Detector:
        """The detector for these settings (made when new: may take a second; call it off the event loop)."""
        h, la, th, kept = self.resolve(hop, lookahead, thresholds, classes)
        key = self.key(h, la, th, kept)
        with self._lock:
            det = self._detectors.get(key)
            if det is None:
                self._evict_unused()
                if len(self._detectors) >= self._limit:
                    raise PoolFullError(f"{self._limit} different detector settings are in use; use the server's "
                                        "hop, lookahead, thresholds and classes or try again later")
                det = self._factory(h, la, th, kept)
                self._detectors[key] = det
            self._users[id(det)] = self._users.get(id(det), 0) + 1
            return det

    def release(self, det: Detector) -> None:
        """One user of ``det`` is done (unused non-default detectors are dropped when room is needed)."""
        with self._lock:
            left = self._users.get(id(det), 0) - 1
            if left > 0:
                self._users[id(det)] = left
            else:
                self._users.pop(id(det), None)

    def _evict_unused(self) -> None:
        for key, det in list(self._detectors.items()):
            if det is not self.default and id(det) not in self._users:
                del self._detectors[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._detectors)


def make_pool(det: Detector, device: str, median_filter: float, threads: int | None, limit: int) -> DetectorPool:
    """The pool of a server around ``det``: detectors for other settings are made on the same model, device,
    post-processing and threads (``streamdet serve`` and each Ray Serve replica build theirs with this)."""

    def factory(hop: float, lookahead: float, thresholds: Mapping[str, tuple[float, float]],
                classes: tuple[str, ...] | None) -> Detector:
        from ..detector import Detector

        def kept(values: Mapping[str, float]) -> dict[str, float]:
            return {label: v for label, v in values.items() if classes is None or label in classes}

        return Detector(det.session.path, device=device, hop=hop, lookahead=lookahead, thresholds=dict(thresholds),
                        median_filter=median_filter, min_duration=kept(det.min_duration), min_gap=kept(det.min_gap),
                        threads=threads, label_map=det.label_map, classes=list(classes) if classes else None)

    return DetectorPool(det, factory, limit=limit, median_filter=median_filter)


def model_info(det: Detector, median_filter: float = 0.0) -> dict[str, Any]:
    """What ``/v1/models`` and the stream's ``ready`` message say about a detector: labels, the model labels each
    is the maximum of (``groups``: ``{label: [label]}`` without a label map), rates, window, step, hop, lookahead,
    thresholds and post-processing."""
    meta = det.metadata
    return {
        "model": det.session.path.stem,
        "labels": det.labels,
        "groups": det.groups,
        "sample_rate": meta.sample_rate,
        "window": meta.window_seconds,
        "step": meta.step_seconds,
        "hop": det.hop,
        "lookahead": det.lookahead,
        "frame": det.frame_seconds,
        "thresholds": {label: list(pair) for label, pair in det.thresholds.items()},
        "postprocessing": {
            "median_filter": median_filter,
            "min_duration": dict(det.min_duration),
            "min_gap": dict(det.min_gap),
        },
        "latency_bound": det.latency_bound,
    }
