"""``streamdet bench``: how fast a model runs here, and how far that is from this machine's limit.

The measurements are :func:`streamdet.bench.measure`; this module parses the options and prints the figures
(numpy + ONNX Runtime only, never torch):

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

from .common import error, fail, model_load_errors, resolve_model
from .options import DeviceOption, ModelOption, ThreadsOption, check_threads
from .text import plain


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
    model: ModelOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
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
    check_threads(threads)
    if quick:
        repeats, seconds, gemm_size, budget = min(repeats, 5), min(seconds, 20.0), 512, 1.0
    else:
        gemm_size, budget = 2048, 10.0
    try:
        from ..bench import measure
    except ImportError as exc:  # onnxruntime missing
        fail(f"cannot load ONNX Runtime ({exc}); install streamdet with the `cpu` or `gpu` extra", 2)
    path = resolve_model(model)
    with model_load_errors(model, path):
        result = measure(path, device, threads, batches or None, repeats, seconds, gemm_size, budget)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
    else:
        _print_table(result)
    if result["errors"]:
        for message in result["errors"]:
            error(message)
        raise typer.Exit(1)
