"""Latency and accuracy together: onset latency and event-based F1 for each (hop, lookahead) on the synthetic
test set, printed as a markdown table and drawn as a PNG (F1 against latency, one annotated point per setting).

Each test file is streamed through ``Detector.stream(...).push`` in hop-sized chunks, as live audio arrives. An
onset update emitted by the push that ended at sample position P has an audio-time latency of P − true onset
(hop and lookahead are in it; the engine bounds it by ``hop + lookahead``); adding the compute time of that push
gives the latency a real-time listener would see. A true onset counts as detected by the first emitted onset of
its class reported within 200 ms of it. Accuracy: event-based F1 (200 ms collar, sed_eval rules) and
segment-based F1 (1 s segments), macro over the classes, from the events of the same streams.

    python benchmarks/latency_accuracy.py                               # bundled model, runs/alerts/data/test
    python benchmarks/latency_accuracy.py --model m.onnx --data DIR --limit 3 --plot out.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from streamdet.train.datasets import read_scenes

from streamdet import Detector
from streamdet.metrics import event_based, events_from_records, segment_based
from streamdet.session import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]
COLLAR = 0.2


def stream_file(det: Detector, path: Path) -> tuple[list[Any], list[tuple[Any, float, float]], float, float]:
    """Push ``path`` through a new stream in hop-sized chunks; return (events, [(onset update, emitted at position
    s, compute s of that push)], audio seconds, total compute seconds)."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    stream = det.stream(rate, name=path.name)
    chunk = max(1, round(det.hop * rate))
    emitted: list[tuple[Any, float, float]] = []
    compute = 0.0
    for start in range(0, len(audio), chunk):
        t0 = time.perf_counter()
        updates = stream.push(audio[start : start + chunk])
        spent = time.perf_counter() - t0
        compute += spent
        position = min(start + chunk, len(audio)) / rate
        emitted += [(u, position, spent) for u in updates if u.type == "onset"]
    t0 = time.perf_counter()
    updates = stream.close()
    spent = time.perf_counter() - t0
    compute += spent
    emitted += [(u, len(audio) / rate, spent) for u in updates if u.type == "onset"]
    return stream.events, emitted, len(audio) / rate, compute


def onset_latencies(truth: list[Any], emitted: list[tuple[Any, float, float]]) -> list[tuple[float, float]]:
    """(audio latency, latency with compute) of each true onset detected by an emitted onset within the collar."""
    used: set[int] = set()
    out = []
    for event in sorted(truth, key=lambda e: e.onset):
        for i, (update, position, spent) in enumerate(emitted):
            if i in used or update.label != event.label or abs(update.onset - event.onset) > COLLAR:
                continue
            used.add(i)
            out.append((position - event.onset, position - event.onset + spent))
            break
    return out


def evaluate(det: Detector, records: list[Any], labels: list[str]) -> dict[str, Any]:
    """Every figure of one (hop, lookahead) setting over ``records``."""
    gt = events_from_records((r.path.name, e.onset, e.offset, e.label) for r in records for e in r.events
                             if e.label in labels)
    durations = {r.path.name: float(r.duration) for r in records}
    predictions: dict[str, list[Any]] = {}
    latencies: list[tuple[float, float]] = []
    audio_s = compute_s = 0.0
    for record in records:
        events, emitted, seconds, compute = stream_file(det, record.path)
        predictions[record.path.name] = events
        latencies += onset_latencies(gt.get(record.path.name, []), emitted)
        audio_s += seconds
        compute_s += compute
    ev = event_based(predictions, gt, labels=labels, durations=durations, t_collar=COLLAR)
    seg = segment_based(predictions, gt, labels=labels, durations=durations, time_resolution=1.0)
    lat = np.array(latencies).reshape(-1, 2)
    n_true = sum(len(v) for v in gt.values())

    def pct(column: int, q: float) -> float | None:
        return float(np.percentile(lat[:, column], q)) if len(lat) else None

    return {
        "hop_s": det.hop, "lookahead_s": det.lookahead, "latency_bound_s": det.latency_bound,
        "event_f1_macro": float(ev.overall["f1_macro"]), "event_f1_micro": float(ev.overall["f1_micro"]),
        "segment_f1_macro": float(seg.overall["f1_macro"]),
        "onsets_true": n_true, "onsets_detected": len(lat),
        "latency_audio_p50_s": pct(0, 50), "latency_audio_p90_s": pct(0, 90),
        "latency_p50_s": pct(1, 50), "latency_p90_s": pct(1, 90),
        "audio_s": audio_s, "compute_s": compute_s, "rtf": compute_s / audio_s if audio_s else None,
    }


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """F1 (event macro, and segment macro in grey) against the median onset latency with compute; whiskers to p90."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    lookaheads = sorted({r["lookahead_s"] for r in rows})
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, max(1, len(lookaheads))))
    for r in rows:
        colour = colours[lookaheads.index(r["lookahead_s"])]
        if r["latency_p50_s"] is None:  # no onset detected: drawn hollow at the latency bound
            x = r["latency_bound_s"]
            ax.plot(x, r["event_f1_macro"], "o", markerfacecolor="none", color=colour, markersize=7)
        else:
            x, x90 = r["latency_p50_s"], r["latency_p90_s"]
            ax.errorbar(x, r["event_f1_macro"], xerr=[[0.0], [x90 - x]], fmt="o", color=colour, capsize=3,
                        markersize=7)
        ax.plot(x, r["segment_f1_macro"], "s", color=colour, alpha=0.35, markersize=6)
        ax.annotate(f"hop {r['hop_s']:g}, la {r['lookahead_s']:g}", (x, r["event_f1_macro"]),
                    textcoords="offset points", xytext=(6, 6), fontsize=8)
    for la, colour in zip(lookaheads, colours, strict=True):
        ax.plot([], [], "o", color=colour, label=f"lookahead {la:g} s")
    ax.plot([], [], "s", color="grey", alpha=0.35, label="segment F1 (1 s segments)")
    ax.plot([], [], "o", color="grey", markerfacecolor="none", label="no onset detected (x = hop + lookahead)")
    ax.set_xlabel("onset latency, s (median; whisker to p90): audio time + compute")
    ax.set_ylabel(f"macro F1: event-based, {int(COLLAR * 1000)} ms collar (circles)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help=f"ONNX model (default: the bundled {BUNDLED_MODEL.name})")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/alerts/data/test",
                        help="synthesised test split (manifest.json + audio/)")
    parser.add_argument("--hops", default="0.25,0.5,1.0")
    parser.add_argument("--lookaheads", default="0,0.5,1.0")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks/latency_accuracy.png")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    model = args.model or BUNDLED_MODEL
    if not model.is_file():
        parser.error(f"model not found: {model} (pass --model PATH)")
    if not (args.data / "manifest.json").is_file():
        parser.error(f"--data {args.data}: no manifest.json (a split written by the scene synthesiser)")
    records = read_scenes(args.data)[: args.limit]
    hops = [float(h) for h in args.hops.split(",")]
    lookaheads = [float(a) for a in args.lookaheads.split(",")]

    rows = []
    seen: set[tuple[float, float]] = set()
    for hop in hops:
        for lookahead in lookaheads:
            det = Detector(model, device=args.device, hop=hop, lookahead=lookahead, threads=args.threads)
            if (det.hop, det.lookahead) in seen:  # lookahead is whole hops: 0.5 s at hop 1 s is 0
                print(f"hop {hop:g} s, lookahead {lookahead:g} s: same as lookahead {det.lookahead:g} s, skipped")
                continue
            seen.add((det.hop, det.lookahead))
            row = evaluate(det, records, det.labels)
            row.update(requested_hop_s=hop, requested_lookahead_s=lookahead)
            rows.append(row)
            print(f"hop {det.hop:g} s, lookahead {det.lookahead:g} s: event F1 {row['event_f1_macro']:.3f}, "
                  f"latency p50 {fmt(row['latency_p50_s'], '.2f')} s", flush=True)
    provider = det.provider.replace("ExecutionProvider", "")
    audio_min = rows[0]["audio_s"] / 60
    print(f"\nmodel {model.name}, {len(records)} files ({audio_min:.1f} min) of {args.data}, {provider}; "
          f"command: python benchmarks/latency_accuracy.py {' '.join(sys.argv[1:])}\n")
    print("| hop (s) | lookahead (s) | bound hop+la (s) | event F1 macro | segment F1 macro | onsets detected "
          "| latency p50 / p90, audio (s) | latency p50 / p90, + compute (s) | RTF |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['hop_s']:g} | {r['lookahead_s']:g} | {r['latency_bound_s']:.2f} | {r['event_f1_macro']:.3f} "
              f"| {r['segment_f1_macro']:.3f} | {r['onsets_detected']} / {r['onsets_true']} "
              f"| {fmt(r['latency_audio_p50_s'], '.2f')} / {fmt(r['latency_audio_p90_s'], '.2f')} "
              f"| {fmt(r['latency_p50_s'], '.2f')} / {fmt(r['latency_p90_s'], '.2f')} | {fmt(r['rtf'], '.4f')} |")
    plot(rows, args.plot, f"{model.name} on {len(records)} synthetic test files ({provider})")
    print(f"\nplot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "data": str(args.data), "files": len(records),
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
