"""Registry of the procedural generators of the ``alerts`` classes, with held-out parameter ranges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import alarm, doorbell, horn, knock, phone, siren, speech
from .core import DEFAULT_SAMPLE_RATE, Sound

ALERTS_LABELS: tuple[str, ...] = ("alarm", "siren", "phone_ring", "doorbell", "knock", "car_horn", "speech")

EVENT_GENERATORS: dict[str, Callable[..., Sound]] = {
    "alarm": alarm.generate,
    "siren": siren.generate,
    "phone_ring": phone.generate,
    "doorbell": doorbell.generate,
    "knock": knock.generate,
    "car_horn": horn.generate,
    "speech": speech.generate,
}

# Parameter ranges reaching beyond the training defaults, for a held-out test set.
HELDOUT_PARAMS: dict[str, dict[str, Any]] = {
    "alarm": {"freq_range": (2600.0, 3800.0), "clock_freq_range": (1500.0, 4500.0), "timing_scale_range": (0.85, 1.15)},
    "siren": {
        "low_range": (450.0, 850.0),
        "high_range": (1150.0, 1900.0),
        "wail_period_range": (2.0, 7.0),
        "yelp_rate_range": (2.0, 8.0),
        "speed_range": (5.0, 40.0),
        "distance_range": (3.0, 60.0),
    },
    "phone_ring": {"timing_scale_range": (0.9, 1.1), "freq_jitter": 0.02, "bell_rate_range": (14.0, 28.0)},
    "doorbell": {"base_range": (400.0, 1050.0), "t60_range": (0.6, 3.0), "note_gap_range": (0.25, 0.9)},
    "knock": {"interval_range": (0.1, 0.4), "mode_range": (80.0, 1200.0), "t60_range": (0.015, 0.15)},
    "car_horn": {"fundamental_range": (330.0, 520.0), "short_range": (0.08, 0.5), "long_range": (0.7, 3.5)},
    "speech": {"pool_seed": 1, "pitch_range": (10.0, 90.0), "rate_range": (110.0, 240.0)},
}


def generate_event(
    label: str, rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE, **params: Any
) -> Sound:
    """Generate one event of class ``label`` with the class generator (``params`` override its ranges)."""
    try:
        fn = EVENT_GENERATORS[label]
    except KeyError:
        raise ValueError(f"no procedural generator for {label!r}; known: {sorted(EVENT_GENERATORS)}") from None
    return fn(rng, sample_rate, **params)
