"""Live capture CPU: one ``Detector.listen`` stream on a real PulseAudio null sink (a private server, fed by
``paplay`` in a loop) at several device rates, PortAudio's "low" latency (the old default) against
"high" (the current one), both with PortAudio's own block size, and "high" with fixed 20 ms blocks (PortAudio
re-blocks the periods; its input timestamps then jump, read as lost audio), interleaved in one run. Prints
figures (not a timed test); record them in benchmarks/RESULTS.md.

    python benchmarks/live_cpu.py [--rates 16000,44100,48000] [--seconds 15] [--reps 2] [--strace]

Each measurement is a fresh process that opens the input through PortAudio's ALSA ``pulse`` device (the path
``streamdet listen --input pulse`` takes), waits 3 s, then reports its CPU time over wall time (all threads:
PortAudio's, the scheduler with the bundled model at hop 0.5 s, a main loop waiting on updates like listen's),
the audio it lost and the overflows. ``--strace`` also counts the system calls per second (``strace -c -f``;
strace slows the process, so its CPU figure is not comparable and is not printed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CONFIGS = {"before: latency low": (0, "low"), "now: latency high": (0, None),
           "fixed 20 ms blocks, latency high": ("20ms", None)}


def child(rate: float, blocksize: int | str, latency: str | None, seconds: float) -> None:
    """Run one stream and print its figures as JSON."""
    import streamdet

    det = streamdet.Detector(device="cpu", hop=0.5, threads=1)
    if blocksize == "20ms":
        blocksize = round(0.02 * rate)
    live = det.listen("pulse", sample_rate=rate, blocksize=blocksize, latency=latency)
    live.start()
    time.sleep(3.0)
    lost0, c0, t0 = live.lost_samples, time.process_time(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        live.get(timeout=0.1)
    wall = time.monotonic() - t0
    cpu = (time.process_time() - c0) / wall
    print(json.dumps({"cpu": cpu, "lost_s": (live.lost_samples - lost0) / rate, "overflows": live.overflows,
                      "device_latency_s": live.device_stream.latency}))
    live.close()
    det.close()


def measure(env: dict, rate: float, config: tuple, seconds: float, strace: bool) -> dict:
    """One child process; with ``strace``, system calls per second instead of CPU."""
    cmd = [sys.executable, __file__, "--child", json.dumps([rate, *config, seconds])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    calls = {}
    if strace:
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
            time.sleep(4.0)
            subprocess.run(["timeout", "-s", "INT", str(seconds - 2), "strace", "-c", "-f", "-p", str(proc.pid), "-o",
                            out.name], capture_output=True)
            for line in out.read().splitlines():
                parts = line.split()
                if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
                    calls[parts[-1]] = int(parts[3]) / (seconds - 2)
    result = json.loads(proc.communicate(timeout=seconds + 60)[0].strip().splitlines()[-1])
    result["calls_per_s"] = calls
    return result


def main() -> None:
    """Parse the options, start the private server and the player, measure, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="16000,44100,48000")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*json.loads(args.child))
        return
    import numpy as np
    import soundfile as sf
    from private_pulse import SINK, PrivatePulse

    pulse = PrivatePulse.start()
    noise = pulse.root / "noise.wav"
    sf.write(noise, (0.1 * np.random.default_rng(0).standard_normal(48000 * 60)).astype(np.float32), 48000)
    player = subprocess.Popen(["sh", "-c", f"while paplay -d {SINK} {noise}; do :; done"], env=pulse.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: dict[tuple[float, str], list[dict]] = {}
    try:
        for rep in range(args.reps):
            for rate in [float(r) for r in args.rates.split(",")]:
                for name, config in CONFIGS.items():
                    r = measure(pulse.env, rate, config, args.seconds, args.strace and rep == 0)
                    rows.setdefault((rate, name), []).append(r)
                    print(f"rep {rep} {rate:g} Hz {name}: {json.dumps(r)}", flush=True)
    finally:
        player.kill()
        pulse.stop()
    print("\n| device rate | settings | CPU, % of a core (each run) | lost audio (sum) | overflows | device latency |"
          + (" poll/s | getpid/s |" if args.strace else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if args.strace else ""))
    for (rate, name), rs in rows.items():
        timed = [r for r in rs if not r["calls_per_s"]]  # runs under strace are slowed: CPU and losses not counted
        cpu = " / ".join(f"{100 * r['cpu']:.1f}" for r in timed)
        line = (f"| {rate:g} Hz | {name} | {cpu} | {sum(r['lost_s'] for r in timed):.2f} s | "
                f"{sum(r['overflows'] for r in timed)} | {1000 * rs[0]['device_latency_s']:.0f} ms |")
        if args.strace:
            calls = next((r["calls_per_s"] for r in rs if r["calls_per_s"]), {})
            line += f" {calls.get('poll', 0):.0f} | {calls.get('getpid', 0):.0f} |"
        print(line)


if __name__ == "__main__":
    main()
