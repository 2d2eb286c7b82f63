"""``streamdet bench``: how fast a model runs here, and how far that is from this machine's limit.

Figures (numpy + ONNX Runtime only, never torch):

- milliseconds per window at batch 1 (median / p90) and windows per second at larger batches;
- the engine's file mode on audio synthesised in memory at hop = half a window: real-time factor and seconds of
  processing per hour of audio;
- the real-time streams at hop 1 s that the measured batch time allows (inference only);
- the provider that actually ran, with IO binding / CUDA graph use on CUDA;
- the limit: this machine's measured fp32 GEMM rate (numpy's BLAS with the session's thread count on CPU; ONNX
  Runtime ``MatMul`` on the GPU), the model's multiply-accumulates per window counted from the ONNX graph (needs the
  optional ``onnx`` package; otherwise reported as unknown), and from both the compute-bound lower time per window
  and each figure as a percentage of that peak.

Exit codes: 0 success, 1 when a measurement failed (the others are still reported), 2 usage errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from .common import MODEL_HELP, error, fail, model_load_errors, resolve_model
from .text import plain

CUDA_BATCHES = (64, 256)
CPU_BATCH = 16
STREAM_HOP = 1.0


def _open_session(model: str | None, device: str, threads: int | None, max_batch: int) -> Any:
    """A :class:`~streamdet.session.ModelSession`, or exit 2 with a message naming the problem."""
    try:
        from ..session import ModelSession
    except ImportError as exc:  # onnxruntime missing
        fail(f"cannot load ONNX Runtime ({exc}); install streamdet with the `cpu` or `gpu` extra", 2)
    path = resolve_model(model)
    with model_load_errors(model, path):
        return ModelSession(path, device=device, threads=threads, max_batch=max_batch)


def _macs(path: Path) -> dict[str, Any]:
    from ..macs import MacCountError, count_onnx_macs

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
    model: str | None,
    device: str = "auto",
    threads: int | None = None,
    batches: tuple[int, ...] | None = None,
    repeats: int = 20,
    seconds: float = 120.0,
    gemm_size: int = 2048,
    budget_s: float = 10.0,
) -> dict[str, Any]:
    """All figures of ``streamdet bench`` as a JSON-ready dict (``errors`` lists the measurements that failed)."""
    import numpy as np

    from .. import perf
    from .._version import __version__
    from ..detector import Detector
    from ..session import CUDA

    session = _open_session(model, device, threads, max(batches or (CPU_BATCH,)))
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
        gpu = perf.cuda_figures(resolve_model(model), device, batches, repeats, budget_s, STREAM_HOP)
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
        det = Detector(resolve_model(model), device=device, hop=hop, threads=threads)
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


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result["model"]
    table = Table(title=plain(f"streamdet bench: {Path(m['path']).name}"), title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    table.add_row("model", plain(f"{m['model_type']} {m['precision']}, {m['classes']} classes, "
                                 f"{m['sample_rate']} Hz, window {m['window_s']:g} s"))
    provider = result["provider"].replace("ExecutionProvider", "")
    if result["threads"] is not None:
        provider += f", {result['threads']} thread{'s' * (result['threads'] != 1)}"
    if result["provider"].startswith("CUDA"):
        provider += f", IO binding {'on' if result['io_binding'] else 'off'}"
        provider += f", CUDA graph {'on' if result['cuda_graph'] else 'off'}"
    table.add_row("provider", provider)
    table.add_section()
    if "batch1_ms" in result:
        b1 = result["batch1_ms"]
        table.add_row("batch 1: ms per window", f"{b1['median']:.2f} median, {b1['p90']:.2f} p90 ({b1['runs']} runs)")
    for b, entry in result["batches"].items():
        ms = entry["ms_per_batch"]
        table.add_row(f"batch {b}: windows/s", f"{entry['windows_per_s']:,.1f} ({ms['median']:.1f} ms per batch)")
    if result["batches"]:
        best = max(e["streams_at_hop_1s"] for e in result["batches"].values())
        table.add_row("streams at hop 1 s", f"{best:,} (inference only)")
    if "file_mode" in result:
        fm = result["file_mode"]
        table.add_row(f"file mode, hop {fm['hop_s']:g} s",
                      f"RTF {fm['rtf']:.4f}: {fm['seconds_per_hour']:.1f} s per hour of audio "
                      f"({fm['audio_s']:g} s synthesised, {fm['windows']} windows)")
    table.add_section()
    macs = result["macs"]
    if macs["per_window"]:
        table.add_row("MACs per window", f"{macs['per_window'] / 1e9:.3f} G (counted from the ONNX graph)")
    else:
        table.add_row("MACs per window", f"unknown ({macs['error']})")
    peak = result["peak"]
    if peak.get("gflops"):
        n = peak.get("threads")
        threads = f", {n} thread{'s' * (n != 1)}" if n else ""
        table.add_row("GEMM peak", f"{peak['gflops']:,.1f} GFLOP/s ({peak['source']}, {peak['size']}²{threads})")
    else:
        table.add_row("GEMM peak", f"unknown ({peak.get('error')})")
    limit = result["limit"]
    if limit["compute_bound_ms_per_window"] is not None:
        table.add_row("compute-bound time per window", f"{limit['compute_bound_ms_per_window']:.2f} ms")
        for name, value in limit["pct_of_peak"].items():
            if value is not None:
                table.add_row(f"% of peak, {name}", f"{value:.1f} %")
    for message in result["errors"]:
        table.add_row(plain("error", "red"), plain(message))
    Console(width=None if sys.stdout.isatty() else 120, highlight=False).print(table)


def bench_command(
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP, show_default=False),
    device: str = typer.Option("auto", "--device", "-d", help="Inference device: auto, cpu, cuda or cuda:N."),
    threads: int | None = typer.Option(None, "--threads", "-t", help="ONNX Runtime CPU threads (default: cores - 1).",
                                       show_default=False),
    batch: list[int] | None = typer.Option(None, "--batch", "-b", help="Batch size for the throughput figure "
                                           "(repeatable). Default: 16 on CPU, 64 and 256 on CUDA.",
                                           show_default=False),
    repeats: int = typer.Option(20, "--repeats", "-n", help="Timed runs per figure (fewer when a figure takes over "
                                                            "10 s)."),
    seconds: float = typer.Option(120.0, "--seconds", help="Seconds of audio synthesised for the file-mode figure."),
    quick: bool = typer.Option(False, "--quick", help="A fast, rough run: 5 repeats, 20 s of audio, small GEMM."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
) -> None:
    """Measure the model's speed (batch 1, large batches, file mode) against this machine's GEMM peak."""
    batches = tuple(batch or ())
    if any(b < 1 for b in batches):
        fail(f"--batch must be >= 1, got {min(batches)}", 2)
    if repeats < 1:
        fail(f"--repeats must be >= 1, got {repeats}", 2)
    if not seconds > 0:
        fail(f"--seconds must be positive, got {seconds}", 2)
    if threads is not None and threads < 1:
        fail(f"--threads must be >= 1, got {threads}", 2)
    if quick:
        repeats, seconds, gemm_size, budget = min(repeats, 5), min(seconds, 20.0), 512, 1.0
    else:
        gemm_size, budget = 2048, 10.0
    result = measure(model, device, threads, batches or None, repeats, seconds, gemm_size, budget)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
    else:
        _print_table(result)
    if result["errors"]:
        for message in result["errors"]:
            error(message)
        raise typer.Exit(1)
