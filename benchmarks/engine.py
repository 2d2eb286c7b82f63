"""Engine benchmark: prints figures (not a timed test). Record them in benchmarks/RESULTS.md.

    python benchmarks/engine.py [--model PATH] [--threads N] [--sections rtf,latency,live,capacity]

Without ``--model`` it uses the bundled model when installed, else builds the band-energy test
model of tests/onnx_test_model.py (needs the ``onnx`` package). Each section runs in a fresh
subprocess so its peak RSS is its own.

- rtf: real-time factor of ``Detector.detect_file`` on a 10-minute 48 kHz mono 16-bit WAV, hop 0.5 s.
- latency: onset latency (emission time − wall time of the true onset) with a source paced in real
  time through the live path (PortAudio-style callback → ring buffer → scheduler thread), 20 s of
  audio with an onset every second (band model: tone bursts) or every 2.5 s (a model whose classes have
  procedural generators, e.g. the bundled one: generated sounds of its classes), for hop 0.25 / 0.5 / 1 s;
  p50 and p95 over the emitted onsets that match a planted one (others are counted, not timed).
- live: CPU load (process CPU time / wall time) and peak RSS of one real-time 48 kHz live-like
  stream, hop 0.5 s, 20 s.
- capacity: streams per CPU core sustained in real time: N 48 kHz streams pushed one hop at a time
  through ``push_many`` (one batched inference call per hop) with one ONNX Runtime thread; the
  largest N whose processing time stays below the audio time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def default_model(workdir: Path) -> Path:
    from streamdet.session import BUNDLED_MODEL

    if BUNDLED_MODEL.exists():
        return BUNDLED_MODEL
    from onnx_test_model import build_band_model

    return build_band_model(workdir / "band.onnx")


BAND_TONES = [(500.0, "low"), (1200.0, "mid"), (2800.0, "high")]


def signal(seconds: float, rate: int, period: float = 1.0, length: float = 0.3, seed: int = 0,
           labels: list[str] | None = None) -> tuple:
    """Quiet noise plus one event per ``period`` s at a random phase; returns (x, [(label, onset s)]).

    For the band test model (``labels`` None or low/mid/high) the events are 0.3 s tone bursts at 500/1200/2800 Hz;
    for another model whose classes have procedural generators (the bundled ``alerts``, with the ``train`` extra
    installed) they are real generated sounds of its classes, at least ``period`` apart, cut to ``period``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = (rng.standard_normal(n) * 0.003).astype(np.float32)
    onsets = []
    generated = _generators(labels)
    if generated:
        from streamdet.train.synth import generate_event

        period = max(period, 2.5)  # room for each sound and a gap: onsets far enough apart to match
    starts = np.arange(0.5, seconds - length - period, period)
    starts = starts + rng.uniform(0.0, period - length, len(starts))  # random phase against the hop grid
    for i, start in enumerate(starts):
        a = int(start * rate)
        if generated:
            label = generated[i % len(generated)]
            sound = generate_event(label, rng, rate)
            y = sound.audio[round(sound.onset * rate) :][: int(0.8 * period * rate)]
            y = 0.3 * y / max(1e-9, float(np.abs(y).max()))
            x[a : a + len(y)] += y[: n - a].astype(np.float32)
        else:
            f, label = BAND_TONES[i % 3]
            b = int((start + length) * rate)
            x[a:b] += (0.1 * np.sin(2 * np.pi * f * np.arange(b - a) / rate)).astype(np.float32)
        onsets.append((label, float(start)))
    return x, onsets


def _generators(labels: list[str] | None) -> list[str]:
    """The model's classes that have procedural generators (empty for the band model or without ``train``)."""
    if not labels or set(labels) == {label for _, label in BAND_TONES}:
        return []
    try:
        from streamdet.train.synth import EVENT_GENERATORS
    except ImportError:
        return []
    return [label for label in labels if label in EVENT_GENERATORS and label != "speech"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def section_rtf(model: Path, threads: int | None, workdir: Path) -> dict:
    import soundfile as sf

    import streamdet

    path = workdir / "ten_minutes.wav"
    rate = 48000
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for minute in range(10):
            f.write(signal(60.0, rate, seed=minute)[0])
    det = streamdet.Detector(model, hop=0.5, threads=threads)
    det.detect_file(path)  # warm caches (file, session)
    t0 = time.perf_counter()
    events = det.detect_file(path)
    wall = time.perf_counter() - t0
    return {"provider": det.provider, "audio_s": 600.0, "wall_s": wall, "rtf": wall / 600.0, "events": len(events),
            "peak_rss_mb": peak_rss_mb()}


class PacedSource:
    """Feeds ``x`` to a LiveStream's callback in 10 ms blocks, paced by the wall clock."""

    def __init__(self, live, x: np.ndarray, rate: int, block: int) -> None:
        self.live, self.x, self.rate, self.block = live, x, rate, block
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        start = time.monotonic()
        for i in range(0, len(self.x), self.block):
            due = start + (i + self.block) / self.rate  # the block is complete at this time
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            info = SimpleNamespace(inputBufferAdcTime=now - self.block / self.rate, currentTime=now)
            self.live.capture(self.x[i : i + self.block, None], self.block, info, None)


def run_live(model: Path, threads: int | None, hop: float, seconds: float) -> dict:
    import streamdet

    rate = 48000
    det = streamdet.Detector(model, hop=hop, threads=threads)
    x, onsets = signal(seconds, rate, labels=det.labels)
    emitted: list[tuple[float, object]] = []
    live = det.listen(sample_rate=rate, open_device=False, on_event=lambda u: emitted.append((time.time(), u)))
    source = PacedSource(live, x, rate, block=rate // 100)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with live:
        source.thread.start()
        source.thread.join()
        time.sleep(hop + 0.2)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    det.close()
    origin = live.stream.wall_origin
    latencies, unmatched = [], 0
    for t_emit, u in emitted:
        if u.type != "onset":
            continue
        near = [on for label, on in onsets if label == u.label and abs(on - u.onset) <= 1.0]
        if not near:  # a false alarm, or a second onset of a fragmented event: no true onset to time it from
            unmatched += 1
            continue
        true = min(near, key=lambda on: abs(on - u.onset))
        latencies.append(t_emit - (origin + true))
    lat = np.asarray(latencies) if latencies else np.full(1, np.nan)
    return {
        "hop": det.hop, "onsets_true": len(onsets), "onsets_matched": len(latencies), "onsets_unmatched": unmatched,
        "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95)),
        "cpu_load": cpu / wall, "peak_rss_mb": peak_rss_mb(), "lost_samples": live.lost_samples,
        "skipped_s": live.stream.skipped_samples / det.sample_rate,
    }


def section_latency(model: Path, threads: int | None, workdir: Path) -> dict:
    return {str(hop): run_live(model, threads, hop, 20.0) for hop in (0.25, 0.5, 1.0)}


def section_live(model: Path, threads: int | None, workdir: Path) -> dict:
    return run_live(model, threads, 0.5, 20.0)


def section_capacity(model: Path, threads: int | None, workdir: Path) -> dict:
    import streamdet

    rate, hop, hops = 48000, 0.5, 12
    det = streamdet.Detector(model, hop=hop, threads=1, max_batch=64)
    x, _ = signal(hops * hop + 1, rate)
    per_hop = int(hop * rate)

    def usage(n: int) -> float:
        streams = [det.stream(rate, name=f"s{i}") for i in range(n)]
        det.push_many({s: x[:per_hop] for s in streams})  # warm-up hop
        t0 = time.perf_counter()
        for h in range(1, hops):
            det.push_many({s: x[h * per_hop : (h + 1) * per_hop] for s in streams})
        return (time.perf_counter() - t0) / ((hops - 1) * hop)

    results = {}
    n, best = 1, 0
    while n <= 4096:
        u = usage(n)
        results[n] = u
        if u >= 1.0:
            break
        best = n
        n *= 2
    lo, hi = best, n
    while hi - lo > max(1, lo // 16) and hi <= 4096:
        mid = (lo + hi) // 2
        u = usage(mid)
        results[mid] = u
        lo, hi = (mid, hi) if u < 1.0 else (lo, mid)
    return {"streams_per_core": lo, "realtime_usage_by_streams": dict(sorted(results.items())),
            "peak_rss_mb": peak_rss_mb()}


SECTIONS = {"rtf": section_rtf, "latency": section_latency, "live": section_live, "capacity": section_capacity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads (default cores-1)")
    parser.add_argument("--sections", default="rtf,latency,live,capacity")
    parser.add_argument("--section", help=argparse.SUPPRESS)  # internal: run one section here
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = args.model or default_model(workdir)
        if args.section:
            print(json.dumps(SECTIONS[args.section](model, args.threads, workdir)))
            return
        print(f"model: {model}  cpu cores: {len(os.sched_getaffinity(0))}  python: {sys.version.split()[0]}")
        for name in args.sections.split(","):
            cmd = [sys.executable, __file__, "--section", name, "--model", str(model)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode:
                print(f"{name}: FAILED\n{out.stderr[-2000:]}")
                continue
            print(f"{name}: {json.dumps(json.loads(out.stdout.strip().splitlines()[-1]), indent=1)}")


if __name__ == "__main__":
    main()
