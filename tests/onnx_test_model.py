"""A tiny contract-following ONNX model built with ``onnx.helper`` (no torch), for engine and CLI tests.

The model's class scores follow the energy in fixed frequency bands, so the expected events of a
synthetic signal are known exactly:

- ``waveform`` [batch, window_samples] is cut into ``steps`` frames of ``step_samples`` samples
  (frame i covers samples ``[i*step, (i+1)*step)`` of the window, as docs/DESIGN.md §2 says);
- each frame goes through a rectangular-window DFT (MatMul with fixed cos/sin matrices), giving a
  power spectrum normalised so a full-frame sine of amplitude A at a bin centre has power A²;
- band powers are sums over each class's bins; the score is
  ``sigmoid(slope_per_db * (10*log10(power + 1e-10) - level_db))``;
- ``framewise`` is that score per frame, ``clipwise`` its maximum over the window.

With the defaults (16 kHz, 1 s window, 20 steps of 50 ms, bins every 20 Hz) a tone of amplitude 0.1
at 500, 1200 or 2800 Hz scores ~1.0 in ``low``, ``mid`` or ``high``; silence scores ~0. A tone that
fills a fraction p of a frame scores 0.5 at about p = 0.1, so an onset lands in the frame where the
tone starts (within one step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamdet.model_metadata import ModelMetadata

DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "low": (300.0, 700.0),
    "mid": (900.0, 1500.0),
    "high": (2000.0, 3500.0),
}
TONES: dict[str, float] = {"low": 500.0, "mid": 1200.0, "high": 2800.0}


def test_model_metadata(
    sample_rate: int = 16000,
    window_samples: int = 16000,
    steps: int = 20,
    labels: Sequence[str] = tuple(DEFAULT_BANDS),
    thresholds: Mapping[str, tuple[float, float]] | None = None,
) -> ModelMetadata:
    """The §2 metadata of the band-energy test model."""
    return ModelMetadata(
        model_type="band_energy_test",
        labels=tuple(labels),
        sample_rate=sample_rate,
        window_samples=window_samples,
        step_seconds=window_samples / steps / sample_rate,
        output_activation="sigmoid",
        precision="fp32",
        frontend={"type": "framed_dft", "frame": window_samples // steps},
        provenance={"source": "tests/onnx_test_model.py", "sha256": None},
        thresholds=thresholds,
    )


test_model_metadata.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def build_band_model(
    path: str | Path,
    *,
    sample_rate: int = 16000,
    window_samples: int = 16000,
    steps: int = 20,
    bands: Mapping[str, tuple[float, float]] | None = None,
    level_db: float = -40.0,
    slope_per_db: float = 0.5,
    thresholds: Mapping[str, tuple[float, float]] | None = None,
    props: Mapping[str, str] | None = None,
    drop_props: Sequence[str] = (),
    fixed_batch: int | None = None,
    window_dim: int | None = None,
) -> Path:
    """Write the band-energy model to ``path`` and return it.

    ``props`` overrides metadata entries verbatim and ``drop_props`` removes some (to build broken
    models); ``fixed_batch`` gives the input a fixed batch size instead of a symbolic one;
    ``window_dim`` declares a different input length than the graph really has.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    bands = dict(bands or DEFAULT_BANDS)
    labels = list(bands)
    step = window_samples // steps
    assert step * steps == window_samples
    freqs = np.fft.rfftfreq(step, 1.0 / sample_rate)
    keep = np.zeros(len(freqs), bool)
    for lo, hi in bands.values():
        keep |= (freqs >= lo) & (freqs <= hi)
    bins = np.nonzero(keep)[0]
    n = np.arange(step)[:, None]
    angle = 2 * np.pi * n * bins[None, :] / step
    scale = 2.0 / step  # a bin-centred sine of amplitude A -> |X|^2 = A^2
    cos = (np.cos(angle) * scale).astype(np.float32)
    sin = (np.sin(angle) * scale).astype(np.float32)
    band = np.zeros((len(bins), len(labels)), np.float32)
    for c, (lo, hi) in enumerate(bands.values()):
        band[:, c] = (freqs[bins] >= lo) & (freqs[bins] <= hi)

    inits = [
        numpy_helper.from_array(np.array([-1, steps, step], np.int64), "frame_shape"),
        numpy_helper.from_array(cos, "cos"),
        numpy_helper.from_array(sin, "sin"),
        numpy_helper.from_array(band, "band"),
        numpy_helper.from_array(np.array(1e-10, np.float32), "eps"),
        numpy_helper.from_array(np.array(10.0 / np.log(10.0) * slope_per_db, np.float32), "slope"),
        numpy_helper.from_array(np.array(-level_db * slope_per_db, np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Reshape", ["waveform", "frame_shape"], ["frames"]),
        helper.make_node("MatMul", ["frames", "cos"], ["re"]),
        helper.make_node("MatMul", ["frames", "sin"], ["im"]),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["power"]),
        helper.make_node("MatMul", ["power", "band"], ["band_power"]),
        helper.make_node("Add", ["band_power", "eps"], ["band_power_eps"]),
        helper.make_node("Log", ["band_power_eps"], ["log_power"]),
        helper.make_node("Mul", ["log_power", "slope"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["framewise"]),
        helper.make_node("ReduceMax", ["framewise"], ["clipwise"], axes=[1], keepdims=0),
    ]
    batch: Any = fixed_batch if fixed_batch is not None else "batch"
    graph = helper.make_graph(
        nodes,
        "band_energy_test",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [batch, window_dim or window_samples])],
        [
            helper.make_tensor_value_info("framewise", TensorProto.FLOAT, [batch, steps, len(labels)]),
            helper.make_tensor_value_info("clipwise", TensorProto.FLOAT, [batch, len(labels)]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="streamdet-tests")
    model.ir_version = 8
    meta = test_model_metadata(sample_rate, window_samples, steps, labels, thresholds).to_props()
    meta.update(props or {})
    for name in drop_props:
        meta.pop(name, None)
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def tone(
    freq: float, start: float, end: float, total: float, sample_rate: int = 16000, amplitude: float = 0.1
) -> np.ndarray:
    """A ``total``-second float32 signal with a sine of ``freq`` Hz between ``start`` and ``end`` seconds."""
    x = np.zeros(round(total * sample_rate), np.float32)
    a, b = round(start * sample_rate), round(end * sample_rate)
    t = np.arange(a, b) / sample_rate
    x[a:b] = amplitude * np.sin(2 * np.pi * freq * t)
    return x


def scene(
    events: Sequence[tuple[str, float, float]],
    total: float,
    sample_rate: int = 16000,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Mix tones for ``(label, onset, offset)`` triples (labels of DEFAULT_BANDS) plus optional white noise."""
    x = np.zeros(round(total * sample_rate), np.float32)
    for label, start, end in events:
        x += tone(TONES[label], start, end, total, sample_rate)
    if noise:
        x += (np.random.default_rng(seed).standard_normal(len(x)) * noise).astype(np.float32)
    return x
