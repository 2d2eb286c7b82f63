"""Alarm generator: smoke/CO/fire alarms (temporal-three / temporal-four) and alarm-clock beeping.

Smoke alarms drive a piezo disc near its resonance (typically 2.8-3.5 kHz) with a square wave, so
the tone is a strong fundamental with weak harmonics. NFPA 72 / ISO 8201 cadences:
  * T3 (fire/smoke): 0.5 s on, 0.5 s off, three times, then 1.5 s off;
  * T4 (carbon monoxide): 0.1 s on, 0.1 s off, four times, then 5 s off.
Alarm clocks beep in short groups (1-4 beeps) repeated at a steady period.
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
    pattern_segments,
    phase_from_freq,
    randint,
    uniform,
)

KINDS = ("t3", "t4", "clock")

T3_CADENCE = [(0.5, 0.5), (0.5, 0.5), (0.5, 1.5)]
T4_CADENCE = [(0.1, 0.1), (0.1, 0.1), (0.1, 0.1), (0.1, 5.0)]


def piezo_tone(
    rng: np.random.Generator,
    n: int,
    sample_rate: int,
    freq: float,
    warble_depth: float = 0.0,
    warble_rate: float = 8.0,
) -> np.ndarray:
    """Piezo-like tone: fundamental plus weak (mostly odd) harmonics, optional slight warble."""
    t = np.arange(n) / sample_rate
    f = freq * (1.0 + warble_depth * np.sin(2 * np.pi * warble_rate * t + rng.uniform(0, 2 * np.pi)))
    amps = [
        1.0,
        uniform(rng, (0.02, 0.12)),
        uniform(rng, (0.05, 0.3)),
        uniform(rng, (0.0, 0.05)),
        uniform(rng, (0.02, 0.12)),
    ]
    return harmonic_wave(phase_from_freq(f, n, sample_rate, rng.uniform(0, 2 * np.pi)), amps, f, sample_rate)


def generate(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    kind: str | None = None,
    freq_range: Range = (2800.0, 3500.0),
    clock_freq_range: Range = (1800.0, 4200.0),
    timing_scale_range: Range = (0.92, 1.08),
    t3_cycles: tuple[int, int] = (1, 3),
    t4_cycles: tuple[int, int] = (1, 2),
    clock_groups: tuple[int, int] = (3, 10),
    warble_prob: float = 0.2,
) -> Sound:
    """Generate one alarm pattern (``kind`` in ``KINDS``, random if None).

    The returned segments are the individual tone bursts; the label spans the pattern once the
    scene merges the short gaps between bursts.
    """
    kind = kind or choose(rng, KINDS)
    scale = uniform(rng, timing_scale_range)
    if kind == "t3":
        freq = uniform(rng, freq_range)
        segs = pattern_segments([(a * scale, b * scale) for a, b in T3_CADENCE], randint(rng, t3_cycles))
        attack, release = 0.004, 0.006
    elif kind == "t4":
        freq = uniform(rng, freq_range)
        segs = pattern_segments([(a * scale, b * scale) for a, b in T4_CADENCE], randint(rng, t4_cycles))
        attack, release = 0.003, 0.004
    elif kind == "clock":
        freq = uniform(rng, clock_freq_range)
        beep = uniform(rng, (0.05, 0.15))
        n_beeps = randint(rng, (1, 4))
        group = [(beep, beep * uniform(rng, (0.7, 1.3)))] * n_beeps
        period = max(n_beeps * 2.2 * beep + 0.15, uniform(rng, (0.5, 1.2)))
        rest = period - sum(a + b for a, b in group)
        group[-1] = (beep, group[-1][1] + max(rest, 0.1))
        segs = pattern_segments(group, randint(rng, clock_groups))
        attack, release = 0.002, 0.004
    else:
        raise ValueError(f"unknown alarm kind {kind!r}; expected one of {KINDS}")
    dur = segs[-1][1] + 0.02
    n = round(dur * sample_rate)
    warble = uniform(rng, (0.003, 0.02)) if rng.random() < warble_prob else 0.0
    x = piezo_tone(rng, n, sample_rate, freq, warble_depth=warble, warble_rate=uniform(rng, (4.0, 16.0)))
    x *= gate(n, sample_rate, segs, attack=attack, release=release)
    return Sound(normalize(x), segs, {"kind": kind, "freq": round(freq, 1)})
