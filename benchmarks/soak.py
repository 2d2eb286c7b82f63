"""Soak and push-size benchmarks: prints figures (not a timed test). Record them in benchmarks/RESULTS.md.

    python benchmarks/soak.py [--sections push,soak|listen] [--hours 24] [--push-hours 2] [--pace 1000]

- push: the engine's own cost of one large push against the same audio in small pushes, inference stubbed out
  (the bundled model's geometry, a runner that returns zeros), ``--push-hours`` of 16 kHz audio: wall time (a
  run without tracemalloc) and tracemalloc peak (a second run) of one push, of 10 s pushes and of 0.1 s pushes.
- soak: ``--hours`` of audio with known events (tests/soak_audio.py) through the band test model (ONNX Runtime,
  hop 0.5 s, one thread) three ways, each in its own process: pushed in random pieces of 10 ms to 10 min
  (``Stream.push``), file mode (``Detector.open_file`` on a FLAC of the same audio) and ``streamdet listen --url
  FILE --pace PACE``. Resident memory every simulated hour, wall time, and whether the three give identical
  events (label, onset, offset).
- listen: the soak without the pushed run (file mode and ``listen --url``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _streamdet_command() -> list[str]:
    script = Path(sys.executable).with_name("streamdet")
    return [str(script)] if script.exists() else [sys.executable, "-m", "streamdet"]


def section_push(hours: float) -> dict:
    """Time and tracemalloc peak of one push vs 10 s and 0.1 s pushes, inference stubbed out."""
    import streamdet
    from streamdet.engine import Engine
    from streamdet.stream import Stream

    det = streamdet.Detector(device="cpu", threads=1)
    steps = det.timeline.window // det.timeline.step
    engine = Engine(det.timeline, det.labels, det.post,
                    lambda x: (np.zeros((x.shape[0], steps, len(det.labels)), np.float32),
                               np.zeros((x.shape[0], len(det.labels)), np.float32)), det.session.batch_limit)
    rate = det.sample_rate
    x = np.zeros(round(hours * 3600 * rate), np.float32)
    out = {"model": det.session.path.name, "sample_rate": rate, "hours": hours}
    for name, chunk in (("one push", x.size), ("10 s pushes", 10 * rate), ("0.1 s pushes", rate // 10)):
        result = {}
        for traced in (False, True):  # timed without tracemalloc (it slows allocations), then its peak
            stream = Stream(engine, rate)
            if traced:
                tracemalloc.start()
            t0 = time.perf_counter()
            for a in range(0, x.size, chunk):
                stream.push(x[a : a + chunk])
            stream.close()
            if traced:
                result["peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
                tracemalloc.stop()
            else:
                result["seconds"] = time.perf_counter() - t0
        out[name] = result
        print(f"  {name}: {result}", file=sys.stderr, flush=True)
    return out


def _band_detector(model: Path):
    import streamdet

    return streamdet.Detector(model, device="cpu", hop=0.5, threads=1)


def section_soak_push(model: Path, hours: float) -> dict:
    """Random-sized pushes (10 ms - 10 min) over ``hours``."""
    from soak_audio import event_key, push_soak

    t0 = time.perf_counter()
    events, samples = push_soak(_band_detector(model), round(hours * 60), 3600,
                                on_sample=lambda h, mb: print(f"  push {h:.0f} h: {mb:.1f} MB", file=sys.stderr,
                                                              flush=True))
    return {"seconds": time.perf_counter() - t0, "rss": samples, "events": [event_key(e) for e in events]}


def section_soak_file(model: Path, flac: Path) -> dict:
    """File mode over the FLAC."""
    from soak_audio import event_key, file_soak

    t0 = time.perf_counter()
    events, samples = file_soak(_band_detector(model), flac, 3600,
                                on_sample=lambda h, mb: print(f"  file {h:.0f} h: {mb:.1f} MB", file=sys.stderr,
                                                              flush=True))
    return {"seconds": time.perf_counter() - t0, "rss": samples, "events": [event_key(e) for e in events]}


def _child(section: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", section, *args], capture_output=False,
                         stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _hourly(samples: list, hours: float) -> list[float]:
    """The RSS sample nearest each whole simulated hour."""
    samples = [tuple(s) for s in samples]
    return [min(samples, key=lambda s: abs(s[0] - h))[1] for h in range(1, int(hours) + 1)]


def soak(hours: float, pace: float, listen_only: bool = False) -> None:
    """The soak section: three runs over the same audio, memory per hour, event equality."""
    from onnx_test_model import build_band_model
    from soak_audio import listen_soak, write_flac

    with tempfile.TemporaryDirectory() as tmp:
        model = build_band_model(Path(tmp) / "band.onnx")
        t0 = time.perf_counter()
        flac = write_flac(Path(tmp) / "soak.flac", round(hours * 60))
        print(f"wrote {hours:g} h of FLAC ({flac.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
        runs = {} if listen_only else {"push": _child("soak_push", str(model), str(hours))}
        runs["file"] = _child("soak_file", str(model), str(flac))
        t0 = time.perf_counter()
        offsets, samples, err, code = listen_soak(_streamdet_command(), model, flac, pace, every_wall=1.0,
                                                  timeout=hours * 3600 / pace * 5 + 300)
        runs["listen"] = {"seconds": time.perf_counter() - t0, "rss": samples, "events": offsets, "code": code,
                          "stderr_tail": err.strip().splitlines()[-3:]}
    reference = [tuple(e) for e in runs["file"]["events"]]
    print(f"\nsoak: {hours:g} simulated hours, band test model, hop 0.5 s; {len(reference)} events in file mode")
    print("| run | wall s | x real time | RSS at 1 h | RSS at the end | min-max after 1 h | events = file mode |")
    print("|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        hourly = _hourly(r["rss"], hours)
        same = [tuple(e) for e in r["events"]] == reference
        print(f"| {name} | {r['seconds']:.0f} | {hours * 3600 / r['seconds']:.0f} | {hourly[0]:.1f} MB | "
              f"{hourly[-1]:.1f} MB | {min(hourly):.1f}-{max(hourly):.1f} MB | {same} ({len(r['events'])}) |")
    for name, r in runs.items():
        print(f"{name} RSS per simulated hour (MB): " + ", ".join(f"{v:.0f}" for v in _hourly(r["rss"], hours)))
    print(f"listen exit code {runs['listen']['code']}; {runs['listen']['stderr_tail']}")


def main() -> None:
    """Parse the options and run the sections."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="push,soak")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--push-hours", type=float, default=2.0)
    ap.add_argument("--pace", type=float, default=1000.0)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, *rest = args.child
        if name == "push":
            result = section_push(float(rest[0]))
        elif name == "soak_push":
            result = section_soak_push(Path(rest[0]), float(rest[1]))
        else:
            result = section_soak_file(Path(rest[0]), Path(rest[1]))
        print(json.dumps(result))
        return
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; {when}")
    sections = args.sections.split(",")
    if "push" in sections:
        r = _child("push", str(args.push_hours))
        print(f"\npush: {r['hours']:g} h at {r['sample_rate']} Hz, {r['model']} geometry, inference stubbed out")
        print("| pushes | wall s | tracemalloc peak |")
        print("|---|---|---|")
        for name in ("one push", "10 s pushes", "0.1 s pushes"):
            print(f"| {name} | {r[name]['seconds']:.2f} | {r[name]['peak_mb']:.1f} MB |")
    if "soak" in sections or "listen" in sections:
        soak(args.hours, args.pace, listen_only="soak" not in sections)


if __name__ == "__main__":
    main()
