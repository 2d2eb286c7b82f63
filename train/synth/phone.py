"""Telephone ringing: national ring cadences, electromechanical bells, electronic trills, ringtones.

* ``us``: 440 + 480 Hz, 2 s on / 4 s off (North American precise tone plan);
* ``uk``: 400 + 450 Hz double ring, 0.4 s on, 0.2 s off, 0.4 s on, 2.0 s off;
* ``eu``: 425 Hz single tone, 1 s (or 1.5 s) on / 4 s (3.5 s) off (CEPT);
* ``bell``: an electromechanical ringer - a clapper driven by the ~20 Hz ringing current strikes two
  gongs alternately; each strike excites inharmonic gong partials, giving the rattling bell sound;
* ``trill``: electronic ringer alternating two tones at 16-25 Hz;
* ``ringtone``: a short looped melody (mobile ringtone) with a synthetic instrument timbre.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .core import (
    DEFAULT_SAMPLE_RATE,
    Range,
    Sound,
    active_segments,
    choose,
    gate,
    harmonic_wave,
    normalize,
    pattern_segments,
    phase_from_freq,
    pulse_amps,
    randint,
    uniform,
)

KINDS = ("us", "uk", "eu", "bell", "trill", "ringtone")

US_CADENCE = [(2.0, 4.0)]
UK_CADENCE = [(0.4, 0.2), (0.4, 2.0)]
SCALES = {
    "major": [0, 2, 4, 5, 7, 9, 11],
    "minor": [0, 2, 3, 5, 7, 8, 10],
    "pentatonic": [0, 2, 4, 7, 9],
}


def _cadence(rng: np.random.Generator, cycles: tuple[int, int], scale: float) -> list[tuple[float, float]]:
    """A random national cadence (US, UK or EU) as on-segments."""
    which = choose(rng, ("us", "uk", "eu"))
    if which == "us":
        pattern = US_CADENCE
    elif which == "uk":
        pattern = UK_CADENCE
    else:
        pattern = [choose(rng, [(1.0, 4.0), (1.5, 3.5)])]
    return pattern_segments([(a * scale, b * scale) for a, b in pattern], randint(rng, cycles))


def _dual_tone(rng: np.random.Generator, n: int, sr: int, freqs: list[float]) -> np.ndarray:
    """Sum of (slightly distorted) sine tones, as heard from a phone's ringer speaker."""
    x = np.zeros(n)
    for f in freqs:
        ph = phase_from_freq(f, n, sr, rng.uniform(0, 2 * np.pi))
        x += harmonic_wave(ph, [1.0, uniform(rng, (0.0, 0.08)), uniform(rng, (0.0, 0.08))], f, sr)
    return x


def _resonator_bank(x: np.ndarray, sr: int, freqs: list[float], t60s: list[float], amps: list[float]) -> np.ndarray:
    """Filter an excitation through decaying two-pole resonators (one per bell partial)."""
    out = np.zeros_like(x)
    for f, t60, a in zip(freqs, t60s, amps, strict=True):
        if f >= 0.45 * sr:
            continue
        r = np.exp(-6.907755 / (t60 * sr))
        w = 2 * np.pi * f / sr
        out += a * signal.lfilter([np.sin(w)], [1.0, -2 * r * np.cos(w), r * r], x)
    return out


def _bell(rng: np.random.Generator, n: int, sr: int, segs: list[tuple[float, float]], rate: float) -> np.ndarray:
    """Electromechanical twin-gong bell struck alternately at ``rate`` strikes per second per gong."""
    exc = [np.zeros(n), np.zeros(n)]
    for on, off in segs:
        k = 0
        t = on
        while t < off:
            i = round(t * sr)
            if i < n:
                exc[k % 2][i] += uniform(rng, (0.7, 1.0))
            t += 1.0 / (2 * rate) * uniform(rng, (0.92, 1.08))
            k += 1
    out = np.zeros(n)
    base = uniform(rng, (700.0, 1600.0))
    for g in range(2):
        f0 = base * (1.0 if g == 0 else uniform(rng, (1.05, 1.3)))
        ratios = [1.0, uniform(rng, (2.0, 2.4)), uniform(rng, (3.4, 4.1)), uniform(rng, (5.0, 6.0))]
        freqs = [f0 * q for q in ratios]
        t60s = [uniform(rng, (0.3, 0.8)) / q**0.5 for q in ratios]
        amps = [1.0, uniform(rng, (0.3, 0.8)), uniform(rng, (0.2, 0.5)), uniform(rng, (0.1, 0.3))]
        out += _resonator_bank(exc[g], sr, freqs, t60s, amps)
    return out


def _trill(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Electronic ringer: square-ish tone alternating between two pitches at 16-25 Hz."""
    f1 = uniform(rng, (600.0, 1800.0))
    f2 = f1 * uniform(rng, (1.15, 1.5))
    rate = uniform(rng, (16.0, 25.0))
    t = np.arange(n) / sr
    f = np.where(np.floor(t * rate * 2) % 2 == 0, f1, f2)
    return harmonic_wave(phase_from_freq(f, n, sr), pulse_amps(9, 0.5, 1.2), f, sr)


def _ringtone(rng: np.random.Generator, sr: int, loops: tuple[int, int]) -> np.ndarray:
    """A random looped melody with an FM (bell/marimba-like) or square-wave instrument."""
    scale = SCALES[choose(rng, list(SCALES))]
    root = uniform(rng, (400.0, 1100.0))
    n_notes = randint(rng, (4, 10))
    note_len = uniform(rng, (0.08, 0.25))
    degrees = np.cumsum(rng.integers(-2, 3, n_notes))
    notes = [root * 2 ** ((12 * (d // len(scale)) + scale[d % len(scale)]) / 12) for d in degrees]
    durs = [note_len * choose(rng, (1, 1, 1, 2)) for _ in notes]
    timbre = choose(rng, ("fm", "square", "sine"))
    ratio, index = choose(rng, (1.0, 2.0, 3.5)), uniform(rng, (1.0, 4.0))
    rest = uniform(rng, (0.2, 0.8))
    pieces = []
    for _ in range(randint(rng, loops)):
        for f, d in zip(notes, durs, strict=True):
            m = round(d * sr)
            t = np.arange(m) / sr
            env = np.minimum(1.0, t / 0.005) * np.exp(-t / (d * uniform(rng, (0.4, 1.5))))
            if timbre == "fm":
                x = np.sin(2 * np.pi * f * t + index * np.exp(-t / 0.08) * np.sin(2 * np.pi * f * ratio * t))
            elif timbre == "square":
                x = harmonic_wave(2 * np.pi * f * t, pulse_amps(7, 0.5), f, sr)
            else:
                x = harmonic_wave(2 * np.pi * f * t, [1.0, 0.3, 0.1], f, sr)
            fade = np.ones(m)
            k = min(m, round(0.004 * sr))
            fade[-k:] = np.linspace(1, 0, k)
            pieces.append(x * env * fade)
        pieces.append(np.zeros(round(rest * sr)))
    return np.concatenate(pieces[:-1])


def generate(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    kind: str | None = None,
    cycles: tuple[int, int] = (1, 2),
    timing_scale_range: Range = (0.95, 1.05),
    freq_jitter: float = 0.01,
    bell_rate_range: Range = (16.0, 25.0),
    ringtone_loops: tuple[int, int] = (1, 3),
) -> Sound:
    """Generate one phone ring of ``kind`` (random if None); cadence kinds return each ring burst."""
    kind = kind or choose(rng, KINDS)
    sr = sample_rate
    jit = 1.0 + uniform(rng, (-freq_jitter, freq_jitter))
    if kind == "ringtone":
        x = _ringtone(rng, sr, ringtone_loops)
        return Sound(normalize(x), active_segments(x, sr, -30.0, 0.3), {"kind": kind})
    scale = uniform(rng, timing_scale_range)
    if kind in ("us", "uk", "eu"):
        pattern = {"us": US_CADENCE, "uk": UK_CADENCE, "eu": [choose(rng, [(1.0, 4.0), (1.5, 3.5)])]}[kind]
        segs = pattern_segments([(a * scale, b * scale) for a, b in pattern], randint(rng, cycles))
    else:
        segs = _cadence(rng, cycles, scale)
    tail = 0.4 if kind == "bell" else 0.02
    n = round((segs[-1][1] + tail) * sr)
    if kind in ("us", "uk", "eu"):
        freqs = {"us": [440.0, 480.0], "uk": [400.0, 450.0], "eu": [425.0]}[kind]
        x = _dual_tone(rng, n, sr, [f * jit for f in freqs]) * gate(n, sr, segs, 0.01, 0.01)
    elif kind == "bell":
        x = _bell(rng, n, sr, segs, uniform(rng, bell_rate_range))
        return Sound(normalize(x), active_segments(x, sr, -30.0, 0.15), {"kind": kind})
    elif kind == "trill":
        x = _trill(rng, n, sr) * gate(n, sr, segs, 0.005, 0.01)
    else:
        raise ValueError(f"unknown phone kind {kind!r}; expected one of {KINDS}")
    return Sound(normalize(x), segs, {"kind": kind})
