"""Shared pytest fixtures. Each owner keeps their fixtures in a clearly named section."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers: onnx_test_model


# --- engine (issue 5): the band-energy test model ---------------------------------------------
@pytest.fixture(scope="session")
def band_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to the band-energy ONNX test model (16 kHz, 1 s window, 20 steps of 50 ms; see onnx_test_model)."""
    from onnx_test_model import build_band_model

    return build_band_model(tmp_path_factory.mktemp("models") / "band.onnx")


@pytest.fixture(scope="session")
def band_detector(band_model: Path):
    """A CPU Detector on the band model with hop 0.25 s (shared: Detector is thread-safe and stateless)."""
    import streamdet

    return streamdet.Detector(band_model, device="cpu", hop=0.25, threads=1)
