"""streamdet against what a user would otherwise run, and against this machine's limit, in one run.

Same weights, same inputs, same process, so a noisy machine slows every side alike:

- HTS-AT (official AudioSet size, random weights): our ONNX graph in fp32 and int8 against the same model in
  PyTorch eager mode;
- AST (official ``base384`` size, 527 classes, random weights): transformers' ``ASTFeatureExtractor`` +
  ``ASTForAudioClassification`` (what most users would pick) against our ONNX AST holding the same weights (the
  transformers model is saved with ``save_pretrained`` and read back by ``streamdet.models.load_checkpoint``);
  how closely the two agree is printed as a sanity figure.

For each: time per 10 s window at batch 1 (median / p90), and file mode at hop = half a window (5 s) as the
real-time factor and seconds per hour of audio (ours: the engine, windows batched as ``streamdet file`` does; the
peers: the same windows cut from the same audio and batched alike, no post-processing), with ratios peer / ours.
The limit: multiply-accumulates per window counted with ``torch.utils.flop_counter`` (``benchmarks/models.py``)
and cross-checked on the ONNX graph (``streamdet.macs``), and this machine's measured fp32 GEMM peak (best of
torch and numpy at the same thread count, measured at the start, between the sections and at the end), so each
figure also reads as a percentage of peak and next to its compute-bound lower time. When ONNX Runtime has a CUDA
provider, a GPU section follows: HTS-AT in fp16 at batch 1 with IO binding and CUDA graphs, throughput at batch 64
and 256, and real-time streams at hop 1 s.

    python benchmarks/peers.py                       # full sizes (minutes on a small CPU)
    python benchmarks/peers.py --small               # tiny configs, a smoke run of about a minute
    python benchmarks/peers.py --threads 2 --repeats 5 --file-seconds 120 --json peers.json

Prints markdown tables ready for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from streamdet import perf
from streamdet.detector import Detector
from streamdet.macs import MacCountError, count_onnx_macs
from streamdet.session import CUDA, ModelSession

HERE = Path(__file__).resolve().parent
WINDOW_SECONDS = 10.0
SMALL_HTSAT = {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8), "num_classes": 5}
SMALL_AST = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "num_labels": 5}


def _bench_models() -> Any:
    """``benchmarks/models.py`` as a module (its MAC counter), loaded by path: ``models`` is also a top folder."""
    spec = importlib.util.spec_from_file_location("streamdet_bench_models", HERE / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------------ the limit
def torch_gemm_peak(size: int, repeats: int) -> perf.GemmPeak:
    """fp32 ``torch.mm`` rate on ``size``² matrices with torch's current thread count, best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    c = torch.empty(size, size)
    timing = perf.time_calls(lambda: torch.mm(a, b, out=c), repeats=repeats, warmup=1)
    return perf.GemmPeak(2.0 * size**3 / timing.min / 1e9, size, timing.min, torch.get_num_threads(),
                         "torch.mm fp32")


class PeakTracker:
    """The fp32 GEMM peak, measured with torch and numpy at the same thread count at several points of the run
    (start, between sections, end); the best figure is the peak every percentage refers to, so a moment of
    contention on a shared machine cannot lower it."""

    def __init__(self, size: int, repeats: int, threads: int) -> None:
        self.size, self.repeats, self.threads = size, repeats, threads
        self.samples: list[dict[str, Any]] = []

    def measure(self, when: str) -> None:
        for figure in (torch_gemm_peak(self.size, self.repeats),
                       perf.numpy_gemm_peak(self.size, self.repeats, threads=self.threads)):
            self.samples.append({"when": when, **figure.to_dict()})

    @property
    def best(self) -> dict[str, Any]:
        return max(self.samples, key=lambda p: p["gflops"])

    @property
    def gflops(self) -> float:
        return self.best["gflops"]

    def summary(self) -> str:
        parts = ", ".join(f"{p['when']} {p['source'].split()[0]} {p['gflops']:.1f}" for p in self.samples)
        return (f"fp32 GEMM peak ({self.size}², {self.threads} threads, best of {self.repeats} per measurement): "
                f"{self.gflops:.1f} GFLOP/s ({self.best['source']}); all measurements: {parts}")


def limit_figures(macs: int, seconds: float, windows: float, gflops: float) -> dict[str, float]:
    """``windows`` windows of ``macs`` MACs done in ``seconds``: % of the peak and the compute-bound lower time."""
    bound = 2.0 * macs * windows / (gflops * 1e9)
    return {"pct_of_peak": 100.0 * bound / seconds, "compute_bound_s": bound}


# ------------------------------------------------------------------------------------------------------ timing
def window_batches(audio: np.ndarray, window: int, hop: int, batch: int):
    """The engine's windows over ``audio``: window k = 1..ceil(N/hop) covers [k·hop − window, k·hop), zeros outside
    the audio; yielded ``batch`` at a time as float32 arrays."""
    n = len(audio)
    count = -(-n // hop)
    padded = np.concatenate([np.zeros(window, np.float32), audio, np.zeros(hop, np.float32)])
    for first in range(1, count + 1, batch):
        ks = range(first, min(count, first + batch - 1) + 1)
        yield np.stack([padded[k * hop : k * hop + window] for k in ks])


def peer_file_mode(run: Callable[[np.ndarray], Any], audio: np.ndarray, window: int, hop: int, batch: int,
                   sample_rate: int, runs: int) -> perf.FileModeResult:
    """Time ``run(windows)`` over every window of ``audio`` (batched like the engine, no post-processing); the
    fastest of ``runs`` passes after a warm-up on one full batch."""
    run(next(window_batches(audio[: window + batch * hop], window, hop, batch)))  # warm-up
    best = None
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        windows = 0
        for chunk in window_batches(audio, window, hop, batch):
            run(chunk)
            windows += len(chunk)
        result = perf.FileModeResult(hop / sample_rate, len(audio) / sample_rate, time.perf_counter() - start,
                                     windows, 0)
        best = result if best is None or result.wall_s < best.wall_s else best
    return best


def engine_file_mode(path: Path, hop_s: float, threads: int, batch: int, audio: np.ndarray, sample_rate: int,
                     runs: int) -> perf.FileModeResult:
    """The engine's file mode (stream fed in blocks, stitching and post-processing included) on the CPU; the
    fastest of ``runs`` passes after a warm-up on one full batch."""
    det = Detector(path, device="cpu", hop=hop_s, threads=threads, max_batch=batch)
    warm = det.metadata.window_samples + round(hop_s * sample_rate) * batch
    perf.file_mode(det, audio[:warm], sample_rate)
    return min((perf.file_mode(det, audio, sample_rate) for _ in range(max(1, runs))), key=lambda r: r.wall_s)


def timing_row(timing: perf.Timing) -> dict[str, float]:
    return {"median_ms": 1e3 * timing.median, "p90_ms": 1e3 * timing.p90, "runs": timing.runs}


def max_diff(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def count_both(bench_models: Any, model: torch.nn.Module, onnx_path: Path, samples: int) -> dict[str, Any]:
    """MACs per window: torch's FLOP counter (benchmarks/models.py) and the ONNX graph counter."""
    torch_macs = int(bench_models.count_macs(model, model, torch.zeros(1, samples)))
    try:
        onnx_macs: int | None = count_onnx_macs(onnx_path).total
    except MacCountError as exc:
        print(f"  (ONNX MAC count unavailable: {exc})")
        onnx_macs = None
    return {"torch": torch_macs, "onnx": onnx_macs, "params": sum(p.numel() for p in model.parameters())}


# ------------------------------------------------------------------------------------------------------ HTS-AT
def run_htsat(args: argparse.Namespace, workdir: Path, bench_models: Any) -> dict[str, Any]:
    from streamdet.export import to_onnx
    from streamdet.models import build_model

    torch.manual_seed(0)
    model = build_model("htsat", **(SMALL_HTSAT if args.small else {})).eval()
    paths = {}
    for precision in ("fp32", "int8"):
        paths[precision] = workdir / f"htsat_{precision}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_onnx(model, paths[precision], precision=precision, verify=False)
    sessions = {p: ModelSession(path, device="cpu", threads=args.threads, max_batch=args.batch)
                for p, path in paths.items()}
    meta = sessions["fp32"].metadata
    samples, rate = meta.window_samples, meta.sample_rate
    x = (perf.synth_audio(meta.window_seconds, rate, seed=1)
         + 0.05 * np.random.default_rng(1).standard_normal(samples)).astype(np.float32)[None, :]
    xt = torch.from_numpy(x)

    with torch.inference_mode():
        reference = model(xt)
    agreement = {}
    for p, session in sessions.items():
        fw, cw = session.run(x)
        agreement[p] = {"clipwise": max_diff(reference.clipwise, cw), "framewise": max_diff(reference.framewise, fw)}

    def eager(batch: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(batch))

    per_window = {"PyTorch eager": perf.time_calls(lambda: eager(x), args.repeats, warmup=1)}
    for p, session in sessions.items():
        per_window[f"ONNX {p}"] = perf.time_calls(lambda s=session: s.run(x), args.repeats, warmup=2)

    hop = samples // 2
    audio = perf.synth_audio(args.file_seconds, rate)
    files = {"PyTorch eager": peer_file_mode(eager, audio, samples, hop, args.batch, rate, args.file_runs)}
    for p, path in paths.items():
        files[f"ONNX {p}"] = engine_file_mode(path, hop / rate, args.threads, args.batch, audio, rate, args.file_runs)

    if args.gpu:
        paths["fp16"] = workdir / "htsat_fp16.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_onnx(model, paths["fp16"], precision="fp16", verify=False)
    macs = count_both(bench_models, model, paths["fp32"], samples)
    return {"name": "HTS-AT", "window_samples": samples, "sample_rate": rate, "paths": paths, "ours": "ONNX fp32",
            "peer": "PyTorch eager", "per_window": per_window, "file_mode": files, "agreement": agreement,
            "macs": macs}


# ------------------------------------------------------------------------------------------------------ AST
def run_ast(args: argparse.Namespace, workdir: Path, bench_models: Any) -> dict[str, Any]:
    import transformers
    from streamdet.export import to_onnx
    from streamdet.models import load_checkpoint
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification
    from transformers.utils import is_speech_available

    torch.manual_seed(0)
    config = ASTConfig(**SMALL_AST) if args.small else ASTConfig(num_labels=527)
    hf = ASTForAudioClassification(config).eval()
    extractor = ASTFeatureExtractor()
    folder = workdir / "ast_transformers"
    hf.save_pretrained(folder)
    extractor.save_pretrained(folder)
    ours = load_checkpoint(folder)
    path = workdir / "ast_fp32.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_onnx(ours, path, window_seconds=WINDOW_SECONDS, verify=False)
    session = ModelSession(path, device="cpu", threads=args.threads, max_batch=args.batch)
    meta = session.metadata
    samples, rate = meta.window_samples, meta.sample_rate
    x = (perf.synth_audio(WINDOW_SECONDS, rate, seed=2)
         + 0.05 * np.random.default_rng(2).standard_normal(samples)).astype(np.float32)[None, :]

    def transformers_run(batch: np.ndarray) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "At least one mel filter has all zero values" (the same in Kaldi)
            features = extractor(list(batch), sampling_rate=rate, return_tensors="pt")
        with torch.inference_mode():
            return torch.sigmoid(hf(**features).logits)

    reference = transformers_run(x)
    _, clipwise = session.run(x)
    agreement = {"ONNX fp32": {"clipwise": max_diff(reference, clipwise)}}

    def features_only() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return extractor(list(x), sampling_rate=rate, return_tensors="pt")

    per_window = {
        "transformers": perf.time_calls(lambda: transformers_run(x), args.repeats, warmup=1),
        "ONNX fp32": perf.time_calls(lambda: session.run(x), args.repeats, warmup=2),
    }
    extractor_time = perf.time_calls(features_only, args.repeats, warmup=1)

    hop = samples // 2
    audio = perf.synth_audio(args.file_seconds, rate)
    files = {"transformers": peer_file_mode(transformers_run, audio, samples, hop, args.batch, rate, args.file_runs),
             "ONNX fp32": engine_file_mode(path, hop / rate, args.threads, args.batch, audio, rate, args.file_runs)}
    macs = count_both(bench_models, ours, path, samples)
    notes = {
        "transformers": transformers.__version__,
        "attention": getattr(hf.config, "_attn_implementation", None),
        "fbank": "torchaudio" if is_speech_available() else "numpy (torchaudio not installed)",
        "feature_extractor_ms": timing_row(extractor_time),
    }
    return {"name": "AST", "window_samples": samples, "sample_rate": rate, "paths": {"fp32": path},
            "ours": "ONNX fp32", "peer": "transformers", "per_window": per_window, "file_mode": files,
            "agreement": agreement, "macs": macs, "notes": notes}


# ------------------------------------------------------------------------------------------------------ GPU
def run_gpu(args: argparse.Namespace, htsat: dict[str, Any] | None) -> dict[str, Any] | None:
    """HTS-AT fp16 on CUDA (the exported random-weight model of the HTS-AT section)."""
    if htsat is None or "fp16" not in htsat["paths"]:
        print("\nGPU section skipped: the HTS-AT section did not run")
        return None
    figures = perf.cuda_figures(htsat["paths"]["fp16"], "cuda", (64, 256), repeats=args.repeats * 4,
                                budget_s=10.0, hop=1.0)
    try:
        figures["peak"] = perf.ort_gemm_peak("cuda", 8192 if not args.small else 2048, 20, dtype="fp16").to_dict()
    except Exception as exc:
        figures["peak"] = {"gflops": None, "error": f"{type(exc).__name__}: {exc}"}
    try:
        figures["macs"] = count_onnx_macs(htsat["paths"]["fp16"]).total
    except MacCountError:
        figures["macs"] = htsat["macs"]["torch"]
    return figures


# ------------------------------------------------------------------------------------------------------ report
def print_header(args: argparse.Namespace) -> None:
    cpu = platform.processor() or platform.machine()
    print(f"date: {dt.date.today().isoformat()}  machine: {platform.node()} ({cpu}, "
          f"{len(os.sched_getaffinity(0))} usable cores, load average {os.getloadavg()[0]:.2f})")
    print(f"python {platform.python_version()}, torch {torch.__version__}, onnxruntime {ort.__version__} "
          f"(providers: {', '.join(ort.get_available_providers())}), numpy {np.__version__}")
    print(f"command: python benchmarks/peers.py {shlex.join(sys.argv[1:])}")
    sizes = "small (smoke run)" if args.small else "official"
    print(f"threads: {args.threads} (torch and ONNX Runtime); sizes: {sizes}")


def print_tables(results: list[dict[str, Any]], peak: float, args: argparse.Namespace) -> None:
    over = []
    print("\n### Per 10 s window, batch 1\n")
    print("| Model | Implementation | ms per window (median / p90) | peer / ours | GMACs | % of fp32 peak "
          "| compute-bound ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        macs = r["macs"]["torch"]
        for name, t in r["per_window"].items():
            lim = limit_figures(macs, t.median, 1, peak)
            over += [f"{r['name']} {name}"] if lim["pct_of_peak"] > 100 else []
            if name == r["peer"]:
                ratio = " / ".join(f"{t.median / r['per_window'][o].median:.2f}× vs {o}"
                                   for o in r["per_window"] if o != r["peer"])
            else:
                ratio = "(ours)"
            print(f"| {r['name']} | {name} | {1e3 * t.median:.1f} / {1e3 * t.p90:.1f} | {ratio} | {macs / 1e9:.2f} "
                  f"| {lim['pct_of_peak']:.1f} % | {1e3 * lim['compute_bound_s']:.1f} |")
    hop = WINDOW_SECONDS / 2
    print(f"\n### File mode, hop {hop:g} s (half a window), {args.file_seconds:g} s of synthesised audio, "
          f"batch {args.batch}, best of {args.file_runs}\n")
    print("| Model | Implementation | RTF | s per hour of audio | peer / ours | % of fp32 peak "
          "| compute-bound s per hour |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        macs = r["macs"]["torch"]
        for name, f in r["file_mode"].items():
            lim = limit_figures(macs, f.wall_s, f.windows, peak)
            over += [f"{r['name']} {name} file mode"] if lim["pct_of_peak"] > 100 else []
            bound_hour = 3600.0 / f.hop_s * 2.0 * macs / (peak * 1e9)
            if name == r["peer"]:
                ratio = " / ".join(f"{f.wall_s / r['file_mode'][o].wall_s:.2f}× vs {o}"
                                   for o in r["file_mode"] if o != r["peer"])
            else:
                ratio = "(ours)"
            print(f"| {r['name']} | {name} | {f.rtf:.4f} | {f.seconds_per_hour:.1f} | {ratio} "
                  f"| {lim['pct_of_peak']:.1f} % | {bound_hour:.1f} |")
    print("\n### Size, and agreement of outputs on the same input (max |difference| of probabilities)\n")
    print("| Model | Parameters | MACs per window (torch counter / ONNX graph) | Compared | clipwise | framewise |")
    print("|---|---|---|---|---|---|")
    for r in results:
        m = r["macs"]
        onnx_macs = f"{m['onnx'] / 1e9:.3f} G" if m["onnx"] else "unknown"
        for name, diff in r["agreement"].items():
            frame = f"{diff['framewise']:.2e}" if "framewise" in diff else "— (no frame output)"
            print(f"| {r['name']} | {m['params']:,} | {m['torch'] / 1e9:.3f} G / {onnx_macs} | {r['peer']} vs {name} "
                  f"| {diff['clipwise']:.2e} | {frame} |")
    for r in results:
        if r.get("notes"):
            n = r["notes"]
            print(f"\n{r['name']} peer: transformers {n['transformers']}, attention {n['attention']}, "
                  f"fbank {n['fbank']}; ASTFeatureExtractor alone "
                  f"{n['feature_extractor_ms']['median_ms']:.1f} ms per window")
    if over:
        print(f"\nWARNING: above 100 % of the measured peak ({', '.join(over)}): every GEMM measurement of this run "
              "was slowed by other load, so the percentages are not trustworthy; rerun on a quiet machine.")


def print_gpu(gpu: dict[str, Any] | None) -> None:
    if gpu is None:
        return
    print("\n### GPU: HTS-AT fp16 on CUDA (IO binding + CUDA graphs, host copies included)\n")
    print("| Batch | ms per call (median / p90) | windows/s | real-time streams at hop 1 s | % of fp16 GEMM peak |")
    print("|---|---|---|---|---|")
    peak = gpu["peak"].get("gflops")
    for batch, entry in gpu["batches"].items():
        t = entry["timing_s"]
        pct = f"{100 * 2 * gpu['macs'] * int(batch) / t['median'] / (peak * 1e9):.1f} %" if peak else "unknown"
        print(f"| {batch} | {1e3 * t['median']:.2f} / {1e3 * t['p90']:.2f} | {entry['windows_per_s']:,.0f} "
              f"| {entry['streams_at_hop']:,} | {pct} |")
    if peak:
        print(f"\nfp16 GEMM peak: {peak:,.0f} GFLOP/s ({gpu['peak']['source']}); io_binding/cuda_graph per batch: "
              + ", ".join(f"{b}: {e['io_binding']}/{e['cuda_graph']}" for b, e in gpu["batches"].items()))
    else:
        print(f"\nGPU GEMM peak unknown: {gpu['peak'].get('error')}")
    for error in gpu["errors"]:
        print(f"error: {error}")


def to_json(value: Any) -> Any:
    if isinstance(value, (perf.Timing, perf.FileModeResult, perf.GemmPeak)):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny configs and short runs (a smoke test)")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and ONNX Runtime (default: "
                                                                   "all usable cores)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 5; small 3)")
    parser.add_argument("--file-seconds", type=float, default=None,
                        help="seconds of audio for the file-mode figures (default 120; small 20)")
    parser.add_argument("--file-runs", type=int, default=2, help="file-mode passes per figure (the fastest counts)")
    parser.add_argument("--batch", type=int, default=16, help="windows per call in file mode (the engine's default)")
    parser.add_argument("--gemm-size", type=int, default=None, help="GEMM size for the peak (default 2048; small 1024)")
    parser.add_argument("--models", default="htsat,ast", help="comma-separated: htsat, ast")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU section even with a CUDA provider")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    args.threads = args.threads or len(os.sched_getaffinity(0))
    args.repeats = args.repeats or (3 if args.small else 5)
    args.file_seconds = args.file_seconds or (20.0 if args.small else 120.0)
    args.gemm_size = args.gemm_size or (1024 if args.small else 2048)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := set(models) - {"htsat", "ast"}:
        parser.error(f"--models: unknown {sorted(unknown)}")
    providers = ort.get_available_providers()
    args.gpu = CUDA in providers and not args.no_gpu and "htsat" in models
    torch.set_num_threads(args.threads)

    print_header(args)
    peak = PeakTracker(args.gemm_size, max(3, args.repeats), args.threads)
    peak.measure("start")
    bench_models = _bench_models()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="streamdet-peers-") as tmp:
        workdir = Path(tmp)
        htsat = None
        if "htsat" in models:
            print("\nHTS-AT: building, exporting fp32 / int8, timing ...", flush=True)
            htsat = run_htsat(args, workdir, bench_models)
            results.append(htsat)
            peak.measure("after HTS-AT")
        if "ast" in models:
            print("AST: building with transformers, loading the same weights into ours, exporting, timing ...",
                  flush=True)
            results.append(run_ast(args, workdir, bench_models))
            peak.measure("after AST")
        print(f"\n{peak.summary()}")
        print_tables(results, peak.gflops, args)
        gpu = None
        if args.gpu:
            gpu = run_gpu(args, htsat)
            print_gpu(gpu)
        elif args.no_gpu:
            print("\nGPU section skipped: --no-gpu")
        elif CUDA in providers:
            print("\nGPU section skipped: it runs HTS-AT (add htsat to --models)")
        else:
            print(f"\nGPU section skipped: no CUDA provider (available: {', '.join(providers)})")
    if args.json:
        payload = {"args": vars(args), "peak": {"gflops": peak.gflops, "samples": peak.samples}, "results": results,
                   "gpu": gpu, "date": dt.date.today().isoformat(), "torch": torch.__version__,
                   "onnxruntime": ort.__version__}
        args.json.write_text(json.dumps(to_json(payload), indent=1, default=str))


if __name__ == "__main__":
    main()
