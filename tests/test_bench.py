"""``streamdet bench`` on the band-energy test model, the ONNX MAC counter against hand counts, perf helpers.

No test asserts a speed: only that figures exist, are consistent with each other and are counted right.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from streamdet import perf
from streamdet.macs import MacCountError, count_onnx_macs, node_macs

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

QUICK = ("--quick", "--repeats", "3", "--seconds", "5", "--batch", "4")


def band_model_macs(sample_rate: int = 16000, window: int = 16000, steps: int = 20) -> int:
    """Hand count for tests/onnx_test_model.py: two framed DFT MatMuls (cos, sin) and the band MatMul."""
    from onnx_test_model import DEFAULT_BANDS

    step = window // steps
    freqs = np.fft.rfftfreq(step, 1.0 / sample_rate)
    keep = np.zeros(len(freqs), bool)
    for lo, hi in DEFAULT_BANDS.values():
        keep |= (freqs >= lo) & (freqs <= hi)
    bins = int(keep.sum())  # 128 DFT bins in the three bands
    return 2 * steps * step * bins + steps * bins * len(DEFAULT_BANDS)


# ------------------------------------------------------------------------------------------------ streamdet bench
@pytest.fixture(scope="module")
def bench_json(cli, band_model: Path) -> dict:
    done = cli("bench", "--model", band_model, "--device", "cpu", "--threads", "1", *QUICK, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_bench_json_figures_are_sane(bench_json: dict, band_model: Path) -> None:
    r = bench_json
    assert r["provider"] == "CPUExecutionProvider" and r["threads"] == 1 and r["errors"] == []
    assert r["model"]["path"] == str(band_model) and r["model"]["window_s"] == 1.0
    b1 = r["batch1_ms"]
    assert 0 < b1["min"] <= b1["median"] <= b1["p90"] and b1["runs"] >= 3
    b4 = r["batches"]["4"]
    assert b4["windows_per_s"] == pytest.approx(4 / (b4["ms_per_batch"]["median"] / 1e3))
    assert b4["streams_at_hop_1s"] == math.floor(1e3 / b4["ms_per_batch"]["median"]) * 4
    fm = r["file_mode"]
    assert fm["hop_s"] == 0.5 and fm["audio_s"] == 5.0 and fm["windows"] == 10  # ceil(5 s / 0.5 s) windows
    assert 0 < fm["rtf"] < 1 and fm["seconds_per_hour"] == pytest.approx(3600 * fm["rtf"])
    assert fm["rtf"] == pytest.approx(fm["wall_s"] / fm["audio_s"])


def test_bench_limit_figures_follow_from_macs_and_peak(bench_json: dict) -> None:
    r = bench_json
    assert r["macs"]["per_window"] == band_model_macs() and r["macs"]["error"] is None
    peak = r["peak"]
    assert peak["gflops"] > 0 and peak["threads"] == 1 and peak["source"] == "numpy GEMM fp32"
    bound = r["limit"]["compute_bound_ms_per_window"]
    assert bound == pytest.approx(1e3 * 2 * band_model_macs() / (peak["gflops"] * 1e9))
    pct = r["limit"]["pct_of_peak"]
    assert set(pct) == {"batch 1", "batch 4", "file mode"}
    assert pct["batch 1"] == pytest.approx(100 * bound / r["batch1_ms"]["median"])
    assert all(v > 0 for v in pct.values())


def test_bench_table(cli, band_model: Path) -> None:
    done = cli("bench", "--model", band_model, "--device", "cpu", *QUICK)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for text in ("band.onnx", "CPU", "batch 1: ms per window", "batch 4: windows/s", "file mode, hop 0.5 s",
                 "s per hour of audio", "MACs per window", "GEMM peak", "% of peak"):
        assert text in out, text


def test_bench_missing_model_and_usage_errors(cli, band_model: Path, tmp_path: Path) -> None:
    missing = cli("bench", "--model", tmp_path / "nope.onnx", "--quick")
    assert missing.returncode == 2 and "nope.onnx: model file not found" in missing.stderr
    not_a_model = tmp_path / "junk.onnx"
    not_a_model.write_bytes(b"not onnx")
    assert cli("bench", "--model", not_a_model, "--quick").returncode == 2
    for args, message in ((("--batch", "0"), "--batch"), (("--repeats", "0"), "--repeats"),
                          (("--seconds", "0"), "--seconds"), (("--device", "tpu"), "device")):
        done = cli("bench", "--model", band_model, "--quick", *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)


# ------------------------------------------------------------------------------------------------ MAC counter
def _model(nodes: list, inputs: list, outputs: list, inits: list | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _f(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def test_single_matmul_hand_count() -> None:
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_f("x", ["batch", 5, 7])],
                   [_f("y", ["batch", 5, 3])], [_w("w", 7, 3)])
    assert count_onnx_macs(model).total == 5 * 7 * 3
    count = count_onnx_macs(model, batch=4)
    assert count.total == 4 * 5 * 7 * 3 and count.per_item == 5 * 7 * 3 and count.by_op == {"MatMul": 420}


def test_conv_gemm_and_batched_matmul_hand_count() -> None:
    nodes = [
        # grouped 3x3 conv, 4 -> 6 channels in 2 groups, padding 1: out [1, 6, 10, 10], 2 inputs per group
        helper.make_node("Conv", ["x", "cw"], ["c"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["f"]),  # [1, 600]
        helper.make_node("Gemm", ["f", "gw"], ["g"], transB=1),  # gw [8, 600]
        helper.make_node("Reshape", ["g", "shape"], ["r"]),  # [1, 2, 4, 1]
        helper.make_node("MatMul", ["r", "r_t"], ["y"]),  # [1, 2, 4, 1] @ [2, 1, 1, 4]: broadcast to [2, 2, 4, 4]
    ]
    inits = [_w("cw", 6, 2, 3, 3), _w("gw", 8, 600), numpy_helper.from_array(np.array([1, 2, 4, 1]), "shape"),
             _w("r_t", 2, 1, 1, 4)]
    model = _model(nodes, [_f("x", [1, 4, 10, 10])], [_f("y", [2, 2, 4, 4])], inits)
    count = count_onnx_macs(model)
    conv = 6 * 10 * 10 * (2 * 3 * 3)
    gemm = 1 * 8 * 600
    matmul = 2 * 2 * 4 * 4 * 1
    assert count.by_op == {"Conv": conv, "Gemm": gemm, "MatMul": matmul}
    assert count.total == conv + gemm + matmul and count.nodes == 3


def _reshape_from_shape_model() -> onnx.ModelProto:
    """x [batch, 24] -> reshape to [batch, 6, 4] through Shape/Gather/Concat -> MatMul [4, 5]: 120 MACs per item."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "tail"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([0]), "zero"), numpy_helper.from_array(np.array([6, 4]), "tail"),
             _w("w", 4, 5)]
    return _model(nodes, [_f("x", ["batch", 24])], [_f("y", ["batch", 6, 5])], inits)


@pytest.mark.parametrize("method", ["auto", "run", "symbolic", "onnx"])
def test_methods_agree_on_shapes_computed_in_the_graph(method: str) -> None:
    model = _reshape_from_shape_model()
    try:
        count = count_onnx_macs(model, batch=3, method=method)
    except MacCountError:
        if method in ("auto", "run"):
            raise
        pytest.skip(f"{method} inference cannot resolve this graph here")
    assert count.total == 3 * 120
    assert method == "auto" or count.method == method


def test_band_model_count_matches_hand_count(band_model: Path) -> None:
    for method in ("auto", "run"):
        assert count_onnx_macs(band_model, method=method).total == band_model_macs()


def test_unknown_shapes_and_missing_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["c"])
    assert node_macs(node, lambda name: None) is None
    assert node_macs(helper.make_node("Relu", ["a"], ["b"]), lambda name: None) == 0
    with pytest.raises(ValueError, match="method"):
        count_onnx_macs(_reshape_from_shape_model(), method="guess")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MacCountError, match="onnx package is not installed"):
        count_onnx_macs("whatever.onnx")


# ------------------------------------------------------------------------------------------------ perf helpers
def test_realtime_streams_and_timing() -> None:
    assert perf.realtime_streams(0.3, 64) == 3 * 64
    assert perf.realtime_streams(1.5, 64) == 0
    assert perf.realtime_streams(0.2, 8, hop=0.5) == 2 * 8
    calls = []
    timing = perf.time_calls(lambda: calls.append(1), repeats=7, warmup=2)
    assert len(calls) == 9 and timing.runs == 7 and 0 <= timing.min <= timing.median <= timing.p90


def test_gemm_peaks_are_positive() -> None:
    pinned = perf.numpy_gemm_peak(256, 2, threads=1)
    assert pinned.gflops > 0 and pinned.threads == 1 and pinned.size == 256
    assert pinned.gflops == pytest.approx(2 * 256**3 / pinned.best_s / 1e9)
    assert perf.ort_gemm_peak("cpu", 256, 2, threads=1).gflops > 0


def test_file_mode_counts_windows(band_detector) -> None:
    audio = perf.synth_audio(3.0, 16000)
    result = perf.file_mode(band_detector, audio, 16000)
    assert result.audio_s == 3.0 and result.windows == 12  # hop 0.25 s
    assert result.events > 0 and result.rtf == pytest.approx(result.wall_s / 3.0)


def test_fixed_batch_graph_counts_per_item(tmp_path: Path) -> None:
    from onnx_test_model import build_band_model

    fixed = build_band_model(tmp_path / "fixed.onnx", fixed_batch=4)
    count = count_onnx_macs(fixed, batch=1)
    assert count.batch == 4 and count.total == 4 * band_model_macs() and count.per_item == band_model_macs()
