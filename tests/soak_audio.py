"""Hours of synthetic audio with known events, generated a minute at a time, and the soak runs of the engine,
file mode and ``listen --url`` over it (benchmarks/soak.py for 24 hours, tests/test_soak.py for one).

The audio is 16 kHz mono with the band model's tones (tests/onnx_test_model.py): every minute, with probability
0.6, one tone of a random class starts 5-35 s in and lasts 1-20 s; the rest is digital silence (so an hour of
FLAC is a few MB). Memory is sampled as the process's resident set (``VmRSS``) at every ``sample_every``
simulated seconds."""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
from onnx_test_model import DEFAULT_BANDS, scene

RATE = 16000
MINUTE = 60


def minute_events(index: int, seed: int = 0) -> list[tuple[str, float, float]]:
    """The ``(label, onset, offset)`` tones of minute ``index`` (seconds within the minute)."""
    rng = random.Random(seed * 1_000_003 + index)
    if rng.random() >= 0.6:
        return []
    start = rng.uniform(5, 35)
    return [(rng.choice(list(DEFAULT_BANDS)), start, start + rng.uniform(1, 20))]


def minutes(total_minutes: int, seed: int = 0) -> Iterator[np.ndarray]:
    """The audio, one minute (float32 [960000]) at a time."""
    for m in range(total_minutes):
        yield scene(minute_events(m, seed), MINUTE, RATE)


def write_flac(path: Path, total_minutes: int, seed: int = 0) -> Path:
    """The audio as a 16-bit FLAC file, written a minute at a time."""
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16", format="FLAC") as f:
        for block in minutes(total_minutes, seed):
            f.write(block)
    return path


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def event_key(e) -> tuple[str, float, float]:
    """What must be identical between two runs over the same audio: label, onset and offset."""
    return (e.label, round(e.onset, 6), round(e.offset, 6))


def push_soak(det, total_minutes: int, sample_every: float, seed: int = 0, max_push: float = 600.0,
              on_sample: Callable[[float, float], object] | None = None) -> tuple[list, list[tuple[float, float]]]:
    """Push the audio into one stream in random pieces of 10 ms to ``max_push`` seconds (log-uniform); return
    the events and ``[(simulated hours, RSS MB)]`` sampled every ``sample_every`` simulated seconds."""
    rng = np.random.default_rng(seed)
    stream = det.stream(RATE, name="soak")
    samples: list[tuple[float, float]] = []
    pending: list[np.ndarray] = []
    held = 0
    want = 0
    pushed = 0
    next_sample = sample_every
    for block in minutes(total_minutes, seed):
        pending.append(block)
        held += block.size
        while True:
            if not want:
                want = max(1, round(RATE * float(np.exp(rng.uniform(np.log(0.01), np.log(max_push))))))
            if held < want:
                break
            buf = np.concatenate(pending)
            stream.push(buf[:want])
            pushed += want
            pending, held, want = [buf[want:]], buf.size - want, 0
            while pushed >= next_sample * RATE:
                samples.append((next_sample / 3600, rss_mb()))
                if on_sample is not None:
                    on_sample(*samples[-1])
                next_sample += sample_every
    if held:
        stream.push(np.concatenate(pending))
    stream.close()
    samples.append((total_minutes / 60, rss_mb()))
    return stream.events, samples


def file_soak(det, path: Path, sample_every: float,
              on_sample: Callable[[float, float], object] | None = None) -> tuple[list, list[tuple[float, float]]]:
    """``Detector.open_file`` over ``path``; the events and the RSS samples (as :func:`push_soak`)."""
    samples: list[tuple[float, float]] = []
    next_sample = [sample_every]

    def progress(done: float, total: float) -> None:
        while done >= next_sample[0]:
            samples.append((next_sample[0] / 3600, rss_mb()))
            if on_sample is not None:
                on_sample(*samples[-1])
            next_sample[0] += sample_every

    run = det.open_file(path, progress=progress)
    run.run()
    samples.append((run.duration / 3600, rss_mb()))
    return run.events, samples


def listen_soak(command: list[str], model: Path, path: Path, pace: float, every_wall: float = 0.5,
                timeout: float = 3600) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]], str, int]:
    """``streamdet listen --url soak=FILE --pace PACE`` as a subprocess: the (label, onset, offset) of its
    offsets, ``[(simulated hours (wall time × pace), RSS MB)]`` sampled every ``every_wall`` s, its stderr and
    exit code."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # pipes would fill up
        proc = subprocess.Popen([*command, "listen", "--url", f"soak={path}", "--pace", str(pace), "--model",
                                 str(model), "--hop", "0.5", "--device", "cpu", "--format", "jsonl"],
                                stdout=out, stderr=err, text=True)
        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            try:
                samples.append(((time.monotonic() - t0) * pace / 3600, rss_mb(proc.pid)))
            except (OSError, RuntimeError):  # it just ended
                break
            time.sleep(every_wall)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        out.seek(0)
        err.seek(0)
        lines, err_text = out.read().splitlines(), err.read()
    events = [json.loads(line) for line in lines]
    offsets = [(u["label"], round(u["onset"], 6), round(u["offset"], 6)) for u in events if u.get("type") == "offset"]
    return offsets, samples, err_text, proc.returncode
