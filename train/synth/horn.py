"""Car horn: one or two electromagnetic horns sounding harmonic tones with fundamentals 350-500 Hz.

A car horn's diaphragm is driven by an interrupter at its fundamental, producing a pulse-like,
harmonically rich waveform radiated through a small flare (a broad resonance ~2-3.5 kHz). Most
cars pair a low and a high horn (e.g. ~400 + 500 Hz) sounding together. Blasts are short
(0.1-0.4 s, often repeated "beep-beep") or long (0.8-3 s).
"""

from __future__ import annotations

import numpy as np

from .core import (
    DEFAULT_SAMPLE_RATE,
    Range,
    Sound,
    choose,
    gate,
    harmonic_wave,
    normalize,
    phase_from_freq,
    pulse_amps,
    randint,
    resonator,
    uniform,
)

PATTERNS = ("short", "long", "mixed")


def _blasts(rng: np.random.Generator, pattern: str, short: Range, long: Range) -> list[tuple[float, float]]:
    if pattern == "short":
        durs = [uniform(rng, short) for _ in range(randint(rng, (1, 3)))]
    elif pattern == "long":
        durs = [uniform(rng, long)]
    else:
        durs = [uniform(rng, short) for _ in range(randint(rng, (1, 2)))] + [uniform(rng, long)]
    segs, t = [], 0.0
    for d in durs:
        segs.append((t, t + d))
        t += d + uniform(rng, (0.08, 0.3))
    return segs


def generate(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    pattern: str | None = None,
    fundamental_range: Range = (350.0, 500.0),
    single_prob: float = 0.25,
    short_range: Range = (0.1, 0.4),
    long_range: Range = (0.8, 3.0),
) -> Sound:
    """Generate one horn event (``pattern`` in ``PATTERNS``, random if None)."""
    sr = sample_rate
    pattern = pattern or choose(rng, PATTERNS)
    segs = _blasts(rng, pattern, short_range, long_range)
    n = round((segs[-1][1] + 0.05) * sr)
    lo, hi = fundamental_range
    if rng.random() < single_prob:
        freqs = [uniform(rng, (lo, hi))]
    else:
        f1 = uniform(rng, (lo, lo + 0.72 * (hi - lo)))
        freqs = [f1, uniform(rng, (min(f1 * 1.1, hi), hi))]
    t = np.arange(n) / sr
    settle = np.zeros(n)
    for on, _ in segs:  # pitch settles from slightly flat at each blast onset
        i = round(on * sr)
        settle[i:] = -0.03 * np.exp(-(t[i:] - on) / 0.02)
    x = np.zeros(n)
    duty, tilt = uniform(rng, (0.1, 0.4)), uniform(rng, (0.4, 1.0))
    for f0 in freqs:
        wander = 1.0 + 0.003 * np.cumsum(rng.standard_normal(n)) / np.sqrt(n)
        f = f0 * (1.0 + settle) * wander
        x += uniform(rng, (0.7, 1.0)) * harmonic_wave(
            phase_from_freq(f, n, sr, rng.uniform(0, 6.3)), pulse_amps(40, duty, tilt), f, sr
        )
    x = x + uniform(rng, (0.5, 2.0)) * resonator(x, sr, uniform(rng, (1800.0, 3500.0)), uniform(rng, (1.5, 4.0)))
    x = np.tanh(uniform(rng, (0.5, 2.0)) * x / np.max(np.abs(x)))
    x *= gate(n, sr, segs, uniform(rng, (0.005, 0.015)), uniform(rng, (0.01, 0.04)))
    return Sound(normalize(x), segs, {"pattern": pattern, "freqs": [round(f, 1) for f in freqs]})
