"""The measurements of ``streamdet bench``: how fast a model runs here, and how far that is from the machine's limit.

:func:`measure` returns every figure as one JSON-ready dict (numpy + ONNX Runtime only, never torch): batch-1 and
batched latency, the engine's file mode on synthesised audio, the real-time streams that allows, and the limit
(the measured GEMM peak, the model's multiply-accumulates counted from the graph, and each figure as a share of
the peak). The CLI (:mod:`streamdet.cli.bench_cmd`) only prints them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import perf
from ._version import __version__
from .detector import Detector
from .session import CUDA, ModelSession

__all__ = ["CPU_BATCH", "CUDA_BATCHES", "STREAM_HOP", "measure"]

CUDA_BATCHES = (64, 256)
CPU_BATCH = 16
STREAM_HOP = 1.0


def _macs(path: Path) -> dict[str, Any]:
    from .macs import MacCountError, count_onnx_macs

    try:
        count = count_onnx_macs(path, batch=1)
    except MacCountError as exc:
        return {"per_window": None, "method": None, "error": str(exc)}
    return {"per_window": round(count.per_item), "method": count.method, "by_op": count.by_op, "error": None}


def _pct(macs: int | None, windows: float, seconds: float, gflops: float | None) -> float | None:
    """Percentage of the GEMM peak reached by ``windows`` windows of ``macs`` MACs in ``seconds``."""
    if not macs or not gflops or seconds <= 0:
        return None
    return 100.0 * 2.0 * macs * windows / seconds / (gflops * 1e9)


def measure(
    model: str | os.PathLike[str] | None,
    device: str = "auto",
    threads: int | None = None,
    batches: tuple[int, ...] | None = None,
    repeats: int = 20,
    seconds: float = 120.0,
    gemm_size: int = 2048,
    budget_s: float = 10.0,
) -> dict[str, Any]:
    """All figures of ``streamdet bench`` for the model file ``model`` (None: the bundled one) as a JSON-ready dict
    (``errors`` lists the measurements that failed). Loading errors (ModelLoadError, ModelMetadataError,
    ValueError for a bad device) are raised."""
    session = ModelSession(model, device=device, threads=threads, max_batch=max(batches or (CPU_BATCH,)))
    meta = session.metadata
    on_cuda = session.provider == CUDA
    batches = tuple(batches or (CUDA_BATCHES if on_cuda else (CPU_BATCH,)))
    errors: list[str] = []
    result: dict[str, Any] = {
        "streamdet": __version__,
        "model": {
            "path": str(session.path), "model_type": meta.model_type, "precision": meta.precision,
            "sample_rate": meta.sample_rate, "window_s": meta.window_seconds, "classes": meta.num_classes,
        },
        "device": device,
        "provider": session.provider,
        "threads": None if on_cuda else session.threads,
        "io_binding": session.uses_io_binding,
        "cuda_graph": session.uses_cuda_graph,
        "errors": errors,
    }
    rng = np.random.default_rng(0)

    def windows(n: int) -> np.ndarray:
        return (0.05 * rng.standard_normal((n, meta.window_samples))).astype(np.float32)

    # --- batch 1 and larger batches ---------------------------------------------------------------------------
    timings: dict[int, perf.Timing] = {}
    if on_cuda:
        del session  # one session per batch size: bound buffers and captured graphs have a fixed batch
        gpu = perf.cuda_figures(model, device, batches, repeats, budget_s, STREAM_HOP)
        errors += gpu["errors"]
        for b, entry in gpu["batches"].items():
            timings[int(b)] = perf.Timing(**entry["timing_s"])
            result["io_binding"], result["cuda_graph"] = entry["io_binding"], entry["cuda_graph"]
    else:
        for b in (1, *batches):
            x = windows(b)
            try:
                warmup = 2 if b == 1 else 1
                timings[b] = perf.time_calls(lambda x=x: session.run(x), repeats, warmup, budget_s=budget_s)
            except Exception as exc:
                errors.append(f"batch {b}: {type(exc).__name__}: {exc}")
        del session
    if 1 in timings:
        t = timings[1]
        result["batch1_ms"] = {"median": 1e3 * t.median, "p90": 1e3 * t.p90, "min": 1e3 * t.min, "runs": t.runs}
    result["batches"] = {
        str(b): {"batch": b, "ms_per_batch": {"median": 1e3 * timings[b].median, "p90": 1e3 * timings[b].p90},
                 "windows_per_s": b / timings[b].median, "runs": timings[b].runs,
                 "streams_at_hop_1s": perf.realtime_streams(timings[b].median, b, STREAM_HOP)}
        for b in batches if b in timings
    }

    # --- file mode, hop = half a window ----------------------------------------------------------------------
    hop = meta.window_seconds / 2
    try:
        det = Detector(model, device=device, hop=hop, threads=threads)
        audio = perf.synth_audio(seconds, meta.sample_rate)
        warm = meta.window_samples + round(det.hop * meta.sample_rate) * det.session.batch_limit
        perf.file_mode(det, audio[:warm], meta.sample_rate)  # warm-up: one full batch
        result["file_mode"] = perf.file_mode(det, audio, meta.sample_rate).to_dict()
        del det
    except Exception as exc:
        errors.append(f"file mode: {type(exc).__name__}: {exc}")

    # --- the limit --------------------------------------------------------------------------------------------
    result["macs"] = _macs(Path(result["model"]["path"]))
    try:
        if on_cuda:
            dtype = "fp16" if meta.precision == "fp16" else "fp32"
            peak = perf.ort_gemm_peak(device if device.startswith("cuda") else "cuda", 4 * gemm_size, repeats,
                                      dtype)
        else:
            peak = perf.numpy_gemm_peak(gemm_size, max(3, repeats // 4), threads=result["threads"])
        result["peak"] = peak.to_dict()
    except ImportError:
        result["peak"] = {"gflops": None, "error": "measuring the GPU's GEMM peak needs the onnx package"}
    except Exception as exc:
        result["peak"] = {"gflops": None, "error": f"{type(exc).__name__}: {exc}"}
        errors.append(f"GEMM peak: {result['peak']['error']}")
    result["limit"] = _limit(result)
    return result


def _limit(result: dict[str, Any]) -> dict[str, Any]:
    macs, gflops = result["macs"]["per_window"], result["peak"].get("gflops")
    limit: dict[str, Any] = {"compute_bound_ms_per_window": None, "pct_of_peak": {}}
    if not macs or not gflops:
        return limit
    limit["compute_bound_ms_per_window"] = 1e3 * 2.0 * macs / (gflops * 1e9)
    pct = limit["pct_of_peak"]
    if "batch1_ms" in result:
        pct["batch 1"] = _pct(macs, 1, result["batch1_ms"]["median"] / 1e3, gflops)
    for b, entry in result["batches"].items():
        pct[f"batch {b}"] = _pct(macs, int(b), entry["ms_per_batch"]["median"] / 1e3, gflops)
    if "file_mode" in result:
        fm = result["file_mode"]
        pct["file mode"] = _pct(macs, fm["windows"], fm["wall_s"], gflops)
    return limit
