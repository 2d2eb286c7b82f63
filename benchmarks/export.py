"""ONNX export of the official HTS-AT and AST: file size, and ONNX Runtime CPU time per window against PyTorch eager.

For each model (official AudioSet sizes with random weights, at the native window: HTS-AT 10 s at 32 kHz, AST
10.24 s at 16 kHz) and precision (fp32, int8), the model is exported with :func:`streamdet.export.to_onnx`, then one
window (batch 1) is timed with ONNX Runtime on CPU and with PyTorch eager on the identical input, in the same run,
at each thread count (ONNX Runtime ``intra_op_num_threads`` = ``torch.set_num_threads``). PyTorch always runs the
fp32 model. Prints the ratio PyTorch / ONNX Runtime (above 1: ONNX Runtime is faster), the largest probability
difference, and a markdown table for benchmarks/RESULTS.md.

    python benchmarks/export.py                              # full size: htsat and ast, fp32 and int8, 1 and 2 threads
    python benchmarks/export.py --small --repeats 3          # the same code on tiny configs (a smoke test)
    python benchmarks/export.py --models htsat --precisions fp32 --threads 1 --verify --json export.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from streamdet.export import to_onnx
from streamdet.models import AST, HTSAT, ASTConfig, HTSATConfig

from streamdet.model_metadata import PRECISIONS

MODELS = ("htsat", "ast")
DEFAULT_PRECISIONS = ("fp32", "int8")  # measured by default; any of streamdet.model_metadata.PRECISIONS works
# --small: the architectures of the tiny test fixtures (same front-ends and windows, a few hundred k parameters)
SMALL = {
    "htsat": {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8), "num_classes": 5},
    "ast": {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_dim": 64, "num_classes": 5},
}


def build(name: str, small: bool) -> torch.nn.Module:
    """The official-size model (or its tiny variant) with seeded random weights, in eval mode."""
    torch.manual_seed(0)
    config = SMALL[name] if small else {}
    model = HTSAT(HTSATConfig(**config)) if name == "htsat" else AST(ASTConfig(**config))
    return model.eval()


def median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs after one warm-up, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), result


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads, one inter-op thread, every graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(name: str, args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Export ``name`` at every precision, then time PyTorch and ONNX Runtime at every thread count."""
    model = build(name, args.small)
    params = sum(p.numel() for p in model.parameters())
    window = model.native_window_samples
    wave = (0.1 * torch.randn(1, window, generator=torch.Generator().manual_seed(1))).float()
    exports = {}
    for precision in args.precisions:
        start = time.perf_counter()
        report = to_onnx(model, folder / f"{name}_{precision}.onnx", precision=precision, verify=args.verify)
        exports[precision] = (report, time.perf_counter() - start)
        check = report.verification
        note = f", verification max |Δp| {check.max_abs_diff:.3g}" if check else ""
        if check and check.events_match is not None:
            note += f", events match fp32: {check.events_match}"
        print(f"  exported {name} {precision}: {report.bytes / 1e6:.1f} MB in {exports[precision][1]:.1f} s{note}",
              flush=True)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            torch_ms, out = median_ms(lambda: model(wave), args.repeats)
        want = [out.framewise.numpy(), out.clipwise.numpy()]
        feed = {"waveform": wave.numpy()}
        for precision, (report, export_s) in exports.items():
            session = ort_session(report.path, threads)
            ort_ms, got = median_ms(lambda s=session, f=feed: s.run(["framewise", "clipwise"], f), args.repeats)
            diff = max(float(np.max(np.abs(g.astype(np.float64) - w))) for g, w in zip(got, want, strict=True))
            row = {
                "model": name, "params": params, "window_seconds": window / model.sample_rate,
                "precision": precision, "threads": threads, "bytes": report.bytes, "export_s": round(export_s, 1),
                "ort_ms": round(ort_ms, 2), "torch_ms": round(torch_ms, 2), "torch_over_ort": torch_ms / ort_ms,
                "max_abs_diff": diff,
                "verification": report.verification.to_dict() if report.verification else None,
            }
            rows.append(row)
            print(f"  {name} {precision} threads {threads}: ONNX Runtime {ort_ms:.1f} ms, PyTorch {torch_ms:.1f} ms "
                  f"per window -> PyTorch / ORT = {torch_ms / ort_ms:.2f}x; max |Δp| {diff:.2g}", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table (one row per model, precision and thread count)."""
    lines = [
        "| model | params | window | precision | file | threads | ONNX Runtime ms/window | PyTorch eager ms/window "
        "| PyTorch / ORT | max abs diff (prob.) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['window_seconds']:g} s | {r['precision']} "
            f"| {r['bytes'] / 1e6:.1f} MB | {r['threads']} | {r['ort_ms']:.1f} | {r['torch_ms']:.1f} "
            f"| {r['torch_over_ort']:.2f}x | {r['max_abs_diff']:.2g} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse the options, run the measurements, print the table (and write JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: htsat,ast")
    parser.add_argument("--precisions", default=",".join(DEFAULT_PRECISIONS),
                        help="comma-separated: fp32,int8 (fp16 too)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement, after one warm-up")
    parser.add_argument("--small", action="store_true", help="tiny configs: the same code in seconds (smoke test)")
    parser.add_argument("--verify", action="store_true", help="verify each export against PyTorch (slower)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    wrong = [m for m in args.models if m not in MODELS] + [p for p in args.precisions if p not in PRECISIONS]
    if wrong or not args.models or not args.precisions or min(args.threads, default=0) < 1 or args.repeats < 1:
        parser.error(f"bad --models / --precisions / --threads / --repeats {wrong or ''}")

    cpu = platform.processor() or platform.machine()
    sizes = "tiny configs" if args.small else "official sizes"
    print(f"torch {torch.__version__} | onnxruntime {ort.__version__} | {cpu} | {sizes}, random weights | batch 1 | "
          f"median of {args.repeats} runs", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="streamdet-bench-export-") as tmp:
        for name in args.models:
            rows += measure(name, args, Path(tmp))
    print()
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "onnxruntime": ort.__version__,
                                               "cpu": cpu, "small": args.small, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
