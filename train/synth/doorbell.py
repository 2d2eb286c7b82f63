"""Doorbells: two-note ding-dong, Westminster and multi-note chimes, and buzzers.

Chimes are struck metal bars or tubes: each strike excites inharmonic partials (free-free bar
ratios 1 : 2.76 : 5.40 : 8.93, or bell-like ratios) that decay exponentially, higher partials
faster. A ding-dong is two notes a third or fourth apart; the label spans the first strike to the
last audible decay. Buzzers are electromagnetic (armature at twice the mains frequency, harsh
harmonics) or electronic (square wave a few hundred Hz).
"""

from __future__ import annotations

import numpy as np

from .core import (
    DEFAULT_SAMPLE_RATE,
    Range,
    Sound,
    active_segments,
    butter,
    choose,
    damped_modes,
    gate,
    harmonic_wave,
    normalize,
    phase_from_freq,
    pulse_amps,
    randint,
    uniform,
)

KINDS = ("ding_dong", "westminster", "multi", "buzzer")
BAR_RATIOS = (1.0, 2.756, 5.404, 8.933)
BELL_RATIOS = (0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01)
WESTMINSTER = (4, 0, 2, -5)  # semitones: E C D G(low), the Westminster quarter motif


def _strike(
    rng: np.random.Generator, n: int, sr: int, start: int, f0: float, ratios: tuple[float, ...], t60: float
) -> np.ndarray:
    """One struck note: inharmonic partials with frequency-dependent exponential decay plus a mallet tick."""
    q = np.array(ratios) * (1.0 + rng.uniform(-0.01, 0.01, len(ratios)))
    amps = rng.uniform(0.3, 1.0, len(q)) / q**0.6
    amps[int(np.argmin(np.abs(q - 1.0)))] = 1.0
    t60s = t60 / q**0.7
    x = damped_modes(n, sr, f0 * q, amps, t60s, start, rng.uniform(0, 2 * np.pi, len(q)))
    tick_len = round(0.002 * sr)
    if start + tick_len < n:
        x[start : start + tick_len] += 0.2 * rng.standard_normal(tick_len) * np.hanning(tick_len)
    return x


def _chime(
    rng: np.random.Generator, sr: int, semis: list[float], gaps: list[float], base: float, t60: float
) -> np.ndarray:
    ratios = BAR_RATIOS if rng.random() < 0.6 else BELL_RATIOS
    onsets = np.concatenate([[0.0], np.cumsum(gaps)])
    n = round((onsets[-1] + t60 * 0.6 + 0.05) * sr)
    x = np.zeros(n)
    for s, on in zip(semis, onsets, strict=True):
        x += uniform(rng, (0.7, 1.0)) * _strike(rng, n, sr, round(on * sr), base * 2 ** (s / 12), ratios, t60)
    return x


def generate(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    kind: str | None = None,
    base_range: Range = (450.0, 950.0),
    t60_range: Range = (0.8, 2.5),
    note_gap_range: Range = (0.3, 0.8),
    buzz_duration_range: Range = (0.3, 2.0),
    presses: tuple[int, int] = (1, 2),
) -> Sound:
    """Generate one doorbell ring of ``kind`` (random if None)."""
    kind = kind or choose(rng, KINDS)
    sr = sample_rate
    base = uniform(rng, base_range)
    t60 = uniform(rng, t60_range)
    if kind == "ding_dong":
        interval = choose(rng, (3, 4, 5, 7))  # minor/major third, fourth, fifth, descending
        semis = [0.0, -float(interval)]
        gaps = [uniform(rng, note_gap_range)]
        if rng.random() < 0.3:  # ding-dong repeated, or a third "ding"
            semis += semis
            gaps += [uniform(rng, (0.6, 1.2)), gaps[0]]
        x = _chime(rng, sr, semis, gaps, base, t60)
    elif kind == "westminster":
        semis = [float(s) for s in WESTMINSTER] * randint(rng, (1, 2))
        g = uniform(rng, (0.35, 0.6))
        gaps = [g * (2.0 if (i + 1) % 4 == 0 else 1.0) for i in range(len(semis) - 1)]
        x = _chime(rng, sr, semis, gaps, base * 0.9, t60)
    elif kind == "multi":
        scale = [0, 2, 4, 5, 7, 9, 11, 12]
        m = randint(rng, (3, 8))
        semis = [float(choose(rng, scale)) for _ in range(m)]
        g = uniform(rng, (0.15, 0.45))
        gaps = [g * uniform(rng, (0.9, 1.1)) for _ in range(m - 1)]
        x = _chime(rng, sr, semis, gaps, base, t60 * 0.8)
    elif kind == "buzzer":
        segs = []
        t = 0.0
        for _ in range(randint(rng, presses)):
            d = uniform(rng, buzz_duration_range)
            segs.append((t, t + d))
            t += d + uniform(rng, (0.2, 0.6))
        n = round((segs[-1][1] + 0.02) * sr)
        if rng.random() < 0.5:  # electromagnetic: armature at twice the mains frequency
            f = choose(rng, (100.0, 120.0)) * (1 + uniform(rng, (-0.01, 0.01)))
            x = harmonic_wave(phase_from_freq(f, n, sr), pulse_amps(60, uniform(rng, (0.05, 0.2)), 0.6), f, sr)
            x = butter(x, sr, 300.0, "highpass", 2)
        else:  # electronic piezo/speaker buzzer
            f = uniform(rng, (300.0, 900.0))
            x = harmonic_wave(phase_from_freq(f, n, sr), pulse_amps(25, 0.5, 1.0), f, sr)
        x = np.tanh(2.0 * x / np.max(np.abs(x))) * gate(n, sr, segs, 0.01, 0.02)
        return Sound(normalize(x), segs, {"kind": kind})
    else:
        raise ValueError(f"unknown doorbell kind {kind!r}; expected one of {KINDS}")
    return Sound(normalize(x), active_segments(x, sr, -30.0, 0.3), {"kind": kind, "base": round(base, 1)})
