"""``streamdet serve`` benchmark: N concurrent real-time WebSocket streams against the same N streams pushed
in-process through ``Detector.push_many``. Prints figures (not a timed test); record them in RESULTS.md.

    python benchmarks/serve.py [--streams 4,8,16,24] [--seconds 15] [--hop 0.5] [--model PATH]

For each N, in a fresh process each (so CPU time and peak RSS are their own):

- server: ``streamdet serve --threads 1`` in a subprocess; N clients (threads of this process) each send 48 kHz
  mono f32le audio in 0.1 s messages paced by the wall clock, with ``scores`` on. A stream's *lag* is the
  wall time a ``scores`` message arrives minus the wall time its audio was captured (paced); the stream is
  *sustained* when its p95 lag stays within 2 hops. Onset latency is the arrival time of an onset minus the
  wall time of the planted event's true onset (onsets within 1 s of a planted one of the same class).
- in-process: one thread pushes the same N streams' 0.1 s blocks through ``Detector.push_many`` (1 ORT thread)
  on the same clock; lag is wall time minus the audio each stream has had evaluated; latency as above.

The audio is the engine benchmark's (``benchmarks/engine.py``): quiet noise with generated sounds of the model's
classes every 2.5 s (with the ``train`` extra) at random phases. CPU is process CPU time over wall time (of the
server process, or of the in-process pusher), RSS the process's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
RATE = 48000
BLOCK = 0.1


def make_signals(path: Path, n: int, seconds: float, model: str | None) -> None:
    """Write ``n`` different signals with planted events (the engine benchmark's generator) to ``path`` (.npz),
    so the measured processes do not carry the generator's imports."""
    from engine import signal

    import streamdet

    labels = streamdet.Detector(model, device="cpu", threads=1).labels
    made = [signal(seconds, RATE, period=2.5, seed=100 + i, labels=labels) for i in range(n)]
    np.savez(path, audio=np.stack([x for x, _ in made]), planted=json.dumps([p for _, p in made]))


def planted_audio(n: int) -> list[tuple[np.ndarray, list]]:
    """The first ``n`` signals of the file named by ``$STREAMDET_BENCH_SIGNALS``, with their planted events."""
    data = np.load(os.environ["STREAMDET_BENCH_SIGNALS"])
    audio, planted = data["audio"][:n].copy(), json.loads(str(data["planted"]))  # (each data[key] reads it all)
    return [(audio[i], [tuple(p) for p in planted[i]]) for i in range(n)]


def latencies(onsets: list[tuple[str, float, float]], planted: list[tuple[str, float]], t0: float) -> list[float]:
    """Arrival minus true onset, for the first reported onset matching each planted event."""
    out = []
    for label, true in planted:
        match = [wall for lab, onset, wall in onsets if lab == label and true - 0.5 <= onset <= true + 1.0]
        if match:
            out.append(min(match) - (t0 + true))
    return out


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one when None)."""
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory of a process, MB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def summary(lags: list[list[float]], lat: list[float], hop: float, cpu: float, wall: float, rss: float) -> dict:
    """The figures of one run."""
    p95 = [float(np.percentile(x, 95)) if x else float("inf") for x in lags]
    return {"sustained": int(sum(p <= 2 * hop for p in p95)), "lag_p95_s": float(np.median(p95)),
            "onset_latency_p50_s": float(np.percentile(lat, 50)) if lat else None,
            "onset_latency_p95_s": float(np.percentile(lat, 95)) if lat else None, "onsets_timed": len(lat),
            "cpu_percent": 100 * cpu / wall, "peak_rss_mb": rss}


def run_server(n: int, seconds: float, hop: float, model: str | None) -> dict:
    """N real-time WebSocket streams against a ``streamdet serve`` subprocess."""
    from streamdet.client import StreamClient

    command = [sys.executable, "-m", "streamdet", "serve", "--port", "0", "--threads", "1", "--device", "cpu",
               "--hop", str(hop), "--max-streams", str(n + 1)] + (["--model", model] if model else [])
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    line = ""
    while "serving on" not in line:
        line = server.stderr.readline()
        if not line:
            raise RuntimeError("the server did not start")
    threading.Thread(target=server.stderr.read, daemon=True).start()
    try:
        url = line.split("serving on ")[1].split("/ ")[0]
        clients = [StreamClient(url, sample_rate=RATE, name=f"s{i}", scores=True) for i in range(n)]
        signals = planted_audio(n)
        lags: list[list[float]] = [[] for _ in range(n)]
        onsets: list[list] = [[] for _ in range(n)]
        t0 = time.monotonic() + 0.5
        cpu0 = cpu_seconds(server.pid)

        def receive(i: int) -> None:
            for message in clients[i].messages():
                now = time.monotonic()
                if message["type"] == "scores":
                    lags[i].append(now - (t0 + message["time"]))
                elif message["type"] == "onset":
                    onsets[i].append((message["label"], message["onset"], now))

        def send(i: int) -> None:
            x, block = signals[i][0], int(BLOCK * RATE)
            for k, a in enumerate(range(0, len(x), block)):
                time.sleep(max(0.0, t0 + (k + 1) * BLOCK - time.monotonic()))
                clients[i].send(x[a : a + block])
            clients[i].end()

        threads = [threading.Thread(target=f, args=(i,)) for i in range(n) for f in (receive, send)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        cpu, rss = cpu_seconds(server.pid) - cpu0, peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait()
    lat = [v for i in range(n) for v in latencies(onsets[i], signals[i][1], t0)]
    return summary(lags, lat, hop, cpu, wall, rss)


def run_inprocess(n: int, seconds: float, hop: float, model: str | None) -> dict:
    """The same N streams pushed through ``Detector.push_many`` on the same real-time clock."""
    import streamdet

    det = streamdet.Detector(model, device="cpu", hop=hop, threads=1)
    streams = [det.stream(RATE, 1, name=f"s{i}") for i in range(n)]
    signals = planted_audio(n)
    lags: list[list[float]] = [[] for _ in range(n)]
    onsets: list[list] = [[] for _ in range(n)]
    block = int(BLOCK * RATE)
    t0 = time.monotonic() + 0.5
    cpu0 = cpu_seconds()
    windows = [0] * n
    for k, a in enumerate(range(0, int(seconds * RATE), block)):
        time.sleep(max(0.0, t0 + (k + 1) * BLOCK - time.monotonic()))
        results = det.push_many([(s, signals[i][0][a : a + block]) for i, s in enumerate(streams)])
        now = time.monotonic()
        for i, s in enumerate(streams):
            if s.windows > windows[i]:  # as the server's scores: when a window was evaluated
                windows[i] = s.windows
                lags[i].append(now - (t0 + s.processed))
            onsets[i] += [(u.label, u.onset, now) for u in results[s] if u.type == "onset"]
    wall = time.monotonic() - t0
    lat = [v for i in range(n) for v in latencies(onsets[i], signals[i][1], t0)]
    return summary(lags, lat, hop, cpu_seconds() - cpu0, wall, peak_rss_mb())


def main() -> None:
    """Run every N in a fresh process per mode and print a table (and the JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="4,8,16,24")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--hop", type=float, default=0.5)
    parser.add_argument("--model", default=None)
    parser.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run = run_server if args.one[0] == "server" else run_inprocess
        print(json.dumps(run(int(args.one[1]), args.seconds, args.hop, args.model)))
        return
    import tempfile

    counts = [int(v) for v in args.streams.split(",")]
    workdir = tempfile.mkdtemp(prefix="streamdet-bench-")
    signals = Path(workdir) / "signals.npz"
    make_signals(signals, max(counts), args.seconds, args.model)
    env = {**os.environ, "STREAMDET_BENCH_SIGNALS": str(signals)}
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"hop {args.hop} s, {args.seconds:g} s of 48 kHz audio per stream")
    print("| streams | mode | sustained | lag p95 (median over streams) | onset latency p50 / p95 | CPU | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    most = {"server": 0, "in-process": 0}
    for n in counts:
        for mode in ("server", "in-process"):
            out = subprocess.run([sys.executable, __file__, "--one", mode, str(n), "--seconds", str(args.seconds),
                                  "--hop", str(args.hop)] + (["--model", args.model] if args.model else []),
                                 capture_output=True, text=True, check=True, env=env)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            lat = (f"{r['onset_latency_p50_s']:.2f} / {r['onset_latency_p95_s']:.2f} s ({r['onsets_timed']})"
                   if r["onsets_timed"] else "-")
            print(f"| {n} | {mode} | {r['sustained']}/{n} | {r['lag_p95_s']:.2f} s | {lat} | "
                  f"{r['cpu_percent']:.0f} % | {r['peak_rss_mb']:.0f} MB |", flush=True)
            if r["sustained"] == n:
                most[mode] = max(most[mode], n)
    print(f"most streams sustained (of {args.streams}): server {most['server']}, in-process {most['in-process']}")
    signals.unlink()
    os.rmdir(workdir)


if __name__ == "__main__":
    main()
