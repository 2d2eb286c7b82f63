"""Knocking on a door: 2-6 knuckle hits exciting the damped resonances of a wooden panel.

Each hit is a short broadband excitation (knuckle contact, 0.5-3 ms) filtered by the door's modes
(4-12 damped modes between 100 and 1000 Hz, T60 of a few tens of ms, as wood is highly damped)
plus a faint high-frequency click. Rhythms: even, grouped (e.g. 3 + 2) or the "shave and a
haircut" figure, with timing and force jitter. The label spans the first hit to the last decay.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .core import (
    DEFAULT_SAMPLE_RATE,
    Range,
    Sound,
    active_segments,
    butter,
    choose,
    damped_modes,
    log_uniform,
    normalize,
    randint,
    uniform,
)

RHYTHMS = ("even", "grouped", "shave")


def door_response(
    rng: np.random.Generator,
    sample_rate: int,
    mode_range: Range = (100.0, 1000.0),
    n_modes: tuple[int, int] = (4, 12),
    t60_range: Range = (0.02, 0.12),
) -> np.ndarray:
    """Impulse response of a door panel: damped modes plus a few short high 'knuckle' modes."""
    m = randint(rng, n_modes)
    freqs = [log_uniform(rng, mode_range) for _ in range(m)]
    t60s = [uniform(rng, t60_range) for _ in range(m)]
    amps = [uniform(rng, (0.3, 1.0)) * (200.0 / f) ** 0.3 for f in freqs]
    for _ in range(randint(rng, (1, 3))):
        freqs.append(log_uniform(rng, (1500.0, 5000.0)))
        t60s.append(uniform(rng, (0.005, 0.02)))
        amps.append(uniform(rng, (0.05, 0.3)))
    n = round(max(t60s) * sample_rate)
    return damped_modes(n, sample_rate, freqs, amps, t60s, 0, rng.uniform(0, 2 * np.pi, len(freqs)))


def _onsets(rng: np.random.Generator, rhythm: str, n_hits: int, interval: float) -> list[float]:
    if rhythm == "shave":  # "shave and a hair-cut ... two bits": long-short-short-long-long (rest) long-long
        rel = [0, 1, 1.5, 2, 3, 5, 6][: max(n_hits, 2)]
        base = [r * interval for r in rel]
    elif rhythm == "grouped":
        split = randint(rng, (1, n_hits - 1))
        base, t = [], 0.0
        for i in range(n_hits):
            base.append(t)
            t += interval * (uniform(rng, (1.8, 2.5)) if i + 1 == split else 1.0)
    else:
        base = [i * interval for i in range(n_hits)]
    return [b + uniform(rng, (-0.08, 0.08)) * interval if i else 0.0 for i, b in enumerate(base)]


def generate(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    hits: tuple[int, int] = (2, 6),
    interval_range: Range = (0.12, 0.35),
    mode_range: Range = (100.0, 1000.0),
    t60_range: Range = (0.02, 0.12),
    sequences: tuple[int, int] = (1, 2),
    sequence_gap_range: Range = (1.2, 2.5),
) -> Sound:
    """Generate one knocking event (one or more sequences of 2-6 hits on the same door)."""
    sr = sample_rate
    ir = door_response(rng, sr, mode_range, t60_range=t60_range)
    onsets: list[float] = []
    t = 0.0
    rhythm = "even"
    for _ in range(randint(rng, sequences)):
        n_hits = randint(rng, hits)
        rhythm = choose(rng, RHYTHMS) if n_hits >= 3 else "even"
        interval = uniform(rng, interval_range)
        seq = _onsets(rng, rhythm, n_hits, interval)
        onsets += [t + s for s in seq]
        t = onsets[-1] + uniform(rng, sequence_gap_range)
    n = round((onsets[-1] + len(ir) / sr + 0.05) * sr)
    exc = np.zeros(n)
    for on in onsets:
        L = max(2, round(uniform(rng, (0.0005, 0.003)) * sr))
        i = round(on * sr)
        burst = rng.standard_normal(L) * np.hanning(L) + np.hanning(L)
        exc[i : i + L] += uniform(rng, (0.5, 1.0)) * burst[: n - i]
    x = signal.oaconvolve(exc, ir)[:n]
    x += 0.1 * butter(exc, sr, 2000.0, "highpass", 2)
    return Sound(normalize(x), active_segments(x, sr, -30.0, 0.6), {"hits": len(onsets), "rhythm": rhythm})
