"""Foreground distractors that must NOT fire: isolated beeps, whistles, clatter, music-like chords.

They share spectral traits with the targets (tonal beeps like alarms, melodic whistles like
ringtones, impacts like knocks, harmonic chords like chimes) so the model learns the differences.
Each generator has the event-generator signature and returns a :class:`~.core.Sound`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .core import (
    DEFAULT_SAMPLE_RATE,
    Sound,
    active_segments,
    butter,
    choose,
    damped_modes,
    gate,
    harmonic_wave,
    log_uniform,
    normalize,
    phase_from_freq,
    randint,
    saw_amps,
    uniform,
)


def beeps(rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Sound:
    """One or two isolated short beeps (microwave, appliance, UI), 400-4000 Hz."""
    sr = sample_rate
    f = log_uniform(rng, (400.0, 4000.0))
    segs, t = [], 0.0
    for _ in range(randint(rng, (1, 2))):
        d = uniform(rng, (0.05, 0.4))
        segs.append((t, t + d))
        t += d + uniform(rng, (0.1, 0.3))
    n = round((segs[-1][1] + 0.02) * sr)
    x = harmonic_wave(phase_from_freq(f, n, sr), [1.0, 0.0, uniform(rng, (0.0, 0.3))], f, sr)
    x *= gate(n, sr, segs, 0.003, 0.005)
    return Sound(normalize(x), segs, {"kind": "beeps", "freq": round(f, 1)})


def whistle(rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Sound:
    """A human whistle: near-sine 800-3000 Hz with breath noise, vibrato and glides between notes."""
    sr = sample_rate
    m = randint(rng, (1, 8))
    durs = [uniform(rng, (0.15, 0.8)) for _ in range(m)]
    n = round(sum(durs) * sr)
    base = uniform(rng, (800.0, 2200.0))
    f = np.concatenate([np.full(round(d * sr), base * 2 ** (int(rng.integers(-5, 8)) / 12)) for d in durs])[:n]
    f = np.pad(f, (0, n - len(f)), mode="edge")
    k = round(0.03 * sr)
    f = np.convolve(f, np.ones(k) / k, mode="same")
    f[: k // 2], f[-k // 2 :] = f[k // 2], f[-k // 2 - 1]
    t = np.arange(n) / sr
    f *= 1 + uniform(rng, (0.0, 0.02)) * np.sin(2 * np.pi * uniform(rng, (4.0, 7.0)) * t)
    x = np.sin(phase_from_freq(f, n, sr))
    breath = butter(rng.standard_normal(n), sr, (1000.0, 6000.0), "bandpass", 2)
    x = x + uniform(rng, (0.02, 0.15)) * breath / (np.std(breath) + 1e-9)
    x *= gate(n, sr, [(0.0, n / sr)], 0.03, 0.05)
    return Sound(normalize(x), [(0.0, n / sr)], {"kind": "whistle"})


def clatter(rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Sound:
    """Dishes/cutlery clatter: irregular bursts of metallic/ceramic impacts with high inharmonic modes."""
    sr = sample_rate
    dur = uniform(rng, (0.5, 3.0))
    k = randint(rng, (5, 30))
    n = round((dur + 0.4) * sr)
    x = np.zeros(n)
    for _ in range(k):
        start = int(rng.integers(0, round(dur * sr)))
        m = randint(rng, (3, 8))
        freqs = [log_uniform(rng, (1200.0, 9000.0)) for _ in range(m)]
        t60s = [uniform(rng, (0.03, 0.35)) for _ in range(m)]
        amps = [uniform(rng, (0.2, 1.0)) for _ in range(m)]
        x += uniform(rng, (0.2, 1.0)) * damped_modes(
            n, sr, freqs, amps, t60s, start, rng.uniform(0, 6.3, m), round(max(t60s) * sr)
        )
    return Sound(normalize(x), active_segments(x, sr, -30.0, 0.3), {"kind": "clatter"})


def chords(rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Sound:
    """Music-like chord progression (organ/pad/piano-like), 2-8 s, harmonic tones 100-1000 Hz."""
    sr = sample_rate
    root = log_uniform(rng, (110.0, 330.0))
    chord_len = uniform(rng, (0.5, 2.0))
    progression = [choose(rng, (0, 5, 7, 9, 2, 4)) for _ in range(randint(rng, (2, 5)))]
    piano = rng.random() < 0.5
    tilt = uniform(rng, (1.0, 2.0))
    pieces = []
    for deg in progression:
        m = round(chord_len * sr)
        t = np.arange(m) / sr
        minor = deg in (2, 4, 9)
        y = np.zeros(m)
        for s in (0, 3 if minor else 4, 7, 12 * int(rng.integers(0, 2))):
            fr = root * 2 ** ((deg + s) / 12)
            y += harmonic_wave(2 * np.pi * fr * t + rng.uniform(0, 6.3), saw_amps(12, tilt), fr, sr)
        env = np.minimum(1.0, t / (0.004 if piano else 0.05))
        if piano:
            env *= np.exp(-t / uniform(rng, (0.3, 1.0)))
        env *= np.minimum(1.0, (m - np.arange(m)) / (0.02 * sr))
        pieces.append(y * env)
    x = np.concatenate(pieces)
    return Sound(normalize(x), active_segments(x, sr, -30.0, 0.3), {"kind": "chords"})


DISTRACTORS: dict[str, Callable[..., Sound]] = {
    "beeps": beeps,
    "whistle": whistle,
    "clatter": clatter,
    "chords": chords,
}
