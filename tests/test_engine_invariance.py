"""Property test: any chunking of the pushed samples yields identical events (docs/DESIGN.md §3 determinism)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx_test_model import scene

import streamdet

EVENTS = [("low", 0.33, 1.71), ("mid", 1.0, 2.46), ("high", 2.9, 3.05), ("low", 3.5, 4.0)]
TOTAL = 4.0


def events_for(det: streamdet.Detector, x: np.ndarray, rate: int, sizes: list[int]) -> list[tuple]:
    s = det.stream(rate, name="p")
    i = n = 0
    while i < len(x):
        size = sizes[n % len(sizes)]
        s.push(x[i : i + size])
        i += size
        n += 1
    s.close()
    # onsets/offsets exactly; confidence rounded (float32 kernels may differ with the batch size)
    return [(e.label, e.onset, e.offset, round(e.confidence, 4)) for e in s.events]


@pytest.fixture(scope="module")
def signals() -> dict[int, np.ndarray]:
    return {rate: scene(EVENTS, TOTAL, rate, noise=0.003, seed=5) for rate in (16000, 44100)}


@pytest.fixture(scope="module")
def references(band_detector: streamdet.Detector, signals: dict[int, np.ndarray]) -> dict[int, list[tuple]]:
    return {rate: events_for(band_detector, x, rate, [len(x)]) for rate, x in signals.items()}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.sampled_from([16000, 44100]),
    sizes=st.lists(st.integers(min_value=1, max_value=30000), min_size=1, max_size=12),
)
def test_any_chunking_gives_identical_events(
    band_detector: streamdet.Detector, signals: dict, references: dict, rate: int, sizes: list[int]
) -> None:
    if min(sizes) < 50:  # keep runtime bounded: tiny chunks repeated over 4 s would be slow
        sizes = [max(s, 50) if i else s for i, s in enumerate(sizes)]
    got = events_for(band_detector, signals[rate], rate, sizes)
    assert got == references[rate]
    assert len(got) == len(EVENTS)
