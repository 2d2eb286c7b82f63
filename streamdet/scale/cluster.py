"""Connecting to Ray (the ``ray`` extra): ``local`` starts a private cluster in this process, anything else is the
address of a running one (``auto``, ``HOST:PORT``, ``ray://HOST:10001``)."""

from __future__ import annotations

import logging
from typing import Any

from ..extras import import_extra


def import_ray(purpose: str) -> Any:
    """``import ray``, or ExtraMissingError saying ``pip install "streamdet[ray]"``."""
    return import_extra("ray", "ray", purpose)


def connect(address: str, purpose: str, num_cpus: int | None = None) -> Any:
    """Connect to (``local``: start) a Ray cluster, quietly; returns the ``ray`` module. ``num_cpus`` only for
    ``local``."""
    ray = import_ray(purpose)
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    if address == "local":
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **options)
    else:
        ray.init(address=address, **options)
    for name in ("ray", "ray.data", "ray.serve"):  # their INFO/WARNING banners are not the command's output
        logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def cluster_cpus(ray: Any) -> int:
    """The CPUs of the connected cluster."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
