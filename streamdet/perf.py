"""Measurement helpers shared by ``streamdet bench`` and ``benchmarks/`` (numpy + ONNX Runtime, never torch).

- :func:`time_calls`: median / p90 / min wall time of a callable.
- :func:`numpy_gemm_peak`: this machine's fp32 matrix-multiply rate (numpy's BLAS, best of several runs), with the
  BLAS thread count pinned in a subprocess when ``threads`` is given (BLAS libraries read it at load time).
- :func:`ort_gemm_peak`: the same through ONNX Runtime (one ``MatMul`` graph, IO-bound on the device), for GPUs;
  needs the ``onnx`` package to build the graph.
- :func:`synth_audio`, :func:`file_mode`: the engine's file mode on audio synthesised in memory.
- :func:`realtime_streams`: streams one provider keeps up with, from a measured batch time.
- :func:`cuda_figures`: batch-1 latency with IO binding and CUDA graphs, throughput at large batches, streams.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "FileModeResult",
    "GemmPeak",
    "Timing",
    "cuda_figures",
    "file_mode",
    "numpy_gemm_peak",
    "ort_gemm_peak",
    "realtime_streams",
    "synth_audio",
    "time_calls",
]

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class Timing:
    """Wall times of repeated calls, in seconds."""

    median: float
    p90: float
    min: float
    runs: int

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict (seconds)."""
        return asdict(self)


def time_calls(fn: Callable[[], Any], repeats: int = 10, warmup: int = 1, budget_s: float | None = None) -> Timing:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls; stop early (after at least 3 timed runs) once
    ``budget_s`` seconds have been spent timing."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    spent = 0.0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
        if budget_s is not None and spent > budget_s and len(times) >= 3:
            break
    return Timing(statistics.median(times), float(np.percentile(times, 90)), min(times), len(times))


@dataclass(frozen=True)
class GemmPeak:
    """A measured matrix-multiply rate: ``gflops`` = 2·n³ / best time of an n×n fp32 product."""

    gflops: float
    size: int
    best_s: float
    threads: int | None  # None: the library's default
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _gemm_best(size: int, repeats: int) -> float:
    """Best time of ``repeats`` fp32 ``size``² products with numpy, after one warm-up."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    return best


def numpy_gemm_peak(size: int = 2048, repeats: int = 5, threads: int | None = None) -> GemmPeak:
    """fp32 GEMM rate of numpy's BLAS on ``size``² matrices, best of ``repeats`` after a warm-up.

    With ``threads``, the product runs in a fresh Python with the BLAS thread variables set to it (BLAS libraries
    read them when they load), so the figure is the peak for that many cores; without, it runs here with the
    library's default thread count.
    """
    size, repeats = int(size), max(1, int(repeats))
    if threads is None:
        best = _gemm_best(size, repeats)
    else:
        env = dict(os.environ, **dict.fromkeys(_THREAD_VARS, str(int(threads))))
        code = f"from streamdet.perf import _gemm_best; print(_gemm_best({size}, {repeats}))"
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode:
            raise RuntimeError(f"GEMM subprocess failed: {done.stderr.strip()[-300:]}")
        best = float(done.stdout.strip().splitlines()[-1])
    return GemmPeak(2.0 * size**3 / best / 1e9, size, best, threads, "numpy GEMM fp32")


def ort_gemm_peak(device: str = "cpu", size: int = 4096, repeats: int = 10, dtype: str = "fp32",
                  threads: int | None = None) -> GemmPeak:
    """GEMM rate of ONNX Runtime's ``MatMul`` on ``device`` (``"cpu"`` or ``"cuda[:N]"``), inputs and output bound
    on the device (no transfers timed). ``dtype``: ``"fp32"`` or ``"fp16"``. Needs the ``onnx`` package."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    elem, np_dtype = (TensorProto.FLOAT16, np.float16) if dtype == "fp16" else (TensorProto.FLOAT, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info(name, elem, [size, size]) for name in ("a", "b")],
        [helper.make_tensor_value_info("c", elem, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    kind = "cuda" if device.startswith("cuda") else "cpu"
    index = int(device.split(":")[1]) if ":" in device else 0
    providers: list[Any] = [("CUDAExecutionProvider", {"device_id": str(index)})] if kind == "cuda" else []
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                   providers=[*providers, "CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    values = {n: ort.OrtValue.ortvalue_from_numpy(rng.standard_normal((size, size)).astype(np_dtype), kind, index)
              for n in ("a", "b")}
    out = ort.OrtValue.ortvalue_from_shape_and_type((size, size), np_dtype, kind, index)
    binding = session.io_binding()
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    binding.bind_ortvalue_output("c", out)
    timing = time_calls(lambda: session.run_with_iobinding(binding), repeats=repeats, warmup=2)
    provider = session.get_providers()[0].replace("ExecutionProvider", "")
    return GemmPeak(2.0 * size**3 / timing.min / 1e9, int(size), timing.min, threads,
                    f"ONNX Runtime MatMul {dtype} on {provider}")


def synth_audio(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Quiet noise with a short tone burst every ~1.5 s (random pitch and phase): float32 mono."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    x = (0.003 * rng.standard_normal(n)).astype(np.float32)
    start = 0.5
    while start + 0.4 < seconds:
        a, b = round(start * sample_rate), round((start + 0.3) * sample_rate)
        freq = float(rng.choice([500.0, 1200.0, 2800.0]))
        x[a:b] += (0.1 * np.sin(2 * np.pi * freq * np.arange(b - a) / sample_rate)).astype(np.float32)
        start += 1.0 + rng.uniform(0.0, 1.0)
    return x


@dataclass(frozen=True)
class FileModeResult:
    """The engine's file mode over ``audio_s`` seconds: wall time, windows run, events found."""

    hop_s: float
    audio_s: float
    wall_s: float
    windows: int
    events: int

    @property
    def rtf(self) -> float:
        """Real-time factor: processing time / audio time."""
        return self.wall_s / self.audio_s

    @property
    def seconds_per_hour(self) -> float:
        """Processing seconds per hour of audio."""
        return self.rtf * 3600.0

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict (with ``rtf`` and ``seconds_per_hour``)."""
        return {**asdict(self), "rtf": self.rtf, "seconds_per_hour": self.seconds_per_hour}


def file_mode(detector: Any, audio: np.ndarray, sample_rate: int) -> FileModeResult:
    """Run ``audio`` through a new stream of ``detector`` in blocks as :class:`streamdet.detector.FileRun` reads a
    file (a hop times the batch limit), close it, and time the whole run."""
    block = max(1, int(detector.hop * sample_rate * detector.session.batch_limit))
    start = time.perf_counter()
    stream = detector.stream(sample_rate, name="bench")
    for i in range(0, len(audio), block):
        stream.push(audio[i : i + block])
    stream.close()
    wall = time.perf_counter() - start
    return FileModeResult(detector.hop, len(audio) / sample_rate, wall, stream.windows, len(stream.events))


def realtime_streams(seconds_per_call: float, batch: int, hop: float = 1.0) -> int:
    """Streams kept in real time at ``hop`` when one call on ``batch`` windows takes ``seconds_per_call``: each
    stream needs one window per hop, and ``floor(hop / t)`` calls fit in a hop (inference only)."""
    if seconds_per_call <= 0:
        raise ValueError("seconds_per_call must be positive")
    return math.floor(hop / seconds_per_call) * int(batch)


def cuda_figures(model: Any, device: str = "cuda", batches: Sequence[int] = (64, 256), repeats: int = 20,
                 budget_s: float = 5.0, hop: float = 1.0) -> dict[str, Any]:
    """Batch-1 latency (IO binding + CUDA graph, host copies included), throughput at ``batches`` and the real-time
    streams at ``hop`` for an ONNX model on CUDA. One :class:`~streamdet.session.ModelSession` per batch size (the
    bound buffers and the captured graph have a fixed batch). Errors are reported per figure, not raised."""
    from .session import CUDA, ModelSession

    out: dict[str, Any] = {"device": device, "batches": {}, "errors": []}
    rng = np.random.default_rng(0)
    for batch in (1, *batches):
        try:
            session = ModelSession(model, device=device, max_batch=batch)
            if session.provider != CUDA:
                raise RuntimeError(f"the session runs on {session.provider}, not CUDA")
            x = (0.05 * rng.standard_normal((batch, session.metadata.window_samples))).astype(np.float32)
            timing = time_calls(lambda s=session, x=x: s.run(x), repeats=repeats, warmup=2, budget_s=budget_s)
            entry = {"timing_s": timing.to_dict(), "windows_per_s": batch / timing.median,
                     "io_binding": session.uses_io_binding, "cuda_graph": session.uses_cuda_graph,
                     "streams_at_hop": realtime_streams(timing.median, batch, hop)}
            out["batches"][str(batch)] = entry
            del session
        except Exception as exc:  # one failing figure must not hide the others
            out["errors"].append(f"batch {batch}: {type(exc).__name__}: {str(exc).strip()[:300]}")
    if out["batches"]:
        out["streams_at_hop"] = max(e["streams_at_hop"] for e in out["batches"].values())
        out["hop_s"] = hop
    return out
