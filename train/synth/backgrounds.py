"""Background textures that carry no target event: noise colours, mains hum, rain, babble, rumble.

Every function has the signature ``fn(rng, sample_rate, duration) -> np.ndarray`` (float32, peak
0.5) and covers the whole duration; :data:`BACKGROUNDS` maps names to them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import signal

from .core import (
    DEFAULT_SAMPLE_RATE,
    butter,
    choose,
    coloured_noise,
    harmonic_wave,
    log_uniform,
    normalize,
    phase_from_freq,
    uniform,
)


def noise(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    duration: float = 10.0,
    exponent: float | None = None,
) -> np.ndarray:
    """White (0), pink (1) or brown (2) noise; a random exponent in [0, 2] if None."""
    n = round(duration * sample_rate)
    e = uniform(rng, (0.0, 2.0)) if exponent is None else exponent
    return normalize(coloured_noise(rng, n, e))


def hum(rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE, duration: float = 10.0) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and harmonics (odd-dominant, as from transformers), with a little noise."""
    n = round(duration * sample_rate)
    f0 = choose(rng, (50.0, 60.0)) * (1 + uniform(rng, (-0.005, 0.005)))
    amps = [
        uniform(rng, (0.0, 1.0)) / k ** uniform(rng, (0.5, 1.5)) * (1.0 if k % 2 else uniform(rng, (0.2, 1.0)))
        for k in range(1, 16)
    ]
    amps[0] = max(amps[0], 0.3)
    x = harmonic_wave(
        phase_from_freq(f0, n, sample_rate), amps, f0, sample_rate, harmonic_phases=rng.uniform(0, 2 * np.pi, len(amps))
    )
    return normalize(x + 0.05 * coloured_noise(rng, n, 1.0))


def rain(rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE, duration: float = 10.0) -> np.ndarray:
    """Rain: band-limited noise bed plus random drops (short decaying resonant clicks, Poisson rate)."""
    n = round(duration * sample_rate)
    bed = butter(
        coloured_noise(rng, n, 0.5),
        sample_rate,
        (uniform(rng, (300.0, 1000.0)), uniform(rng, (5000.0, 12000.0))),
        "bandpass",
        2,
    )
    rate = log_uniform(rng, (50.0, 800.0))
    k = rng.poisson(rate * duration)
    drops = np.zeros(n)
    idx = rng.integers(0, n, k)
    np.add.at(drops, idx, rng.lognormal(0.0, 0.7, k) * rng.choice([-1.0, 1.0], k))
    # each drop rings at its own pitch: split the drops over a few kernels with random resonances
    L = round(0.01 * sample_rate)
    t = np.arange(L) / sample_rate
    group = rng.integers(0, 8, n)
    out = np.zeros(n)
    for g in range(8):
        kernel = np.exp(-t / uniform(rng, (0.0008, 0.003))) * np.sin(2 * np.pi * log_uniform(rng, (800.0, 7000.0)) * t)
        out += signal.oaconvolve(np.where(group == g, drops, 0.0), kernel)[:n]
    drops = out
    drops = butter(drops, sample_rate, 400.0, "highpass", 2)
    mix = uniform(rng, (0.3, 1.0))
    return normalize(bed / (np.std(bed) + 1e-9) * mix + drops / (np.std(drops) + 1e-9))


def _pseudo_voice(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A vowel-like voice: glottal pulse train with wandering pitch through switching formants."""
    t = np.arange(n) / sr
    f0 = uniform(rng, (90.0, 260.0)) * (
        1 + 0.15 * np.sin(2 * np.pi * uniform(rng, (0.5, 2.0)) * t + rng.uniform(0, 6.3))
    )
    # glottal source: an impulse train at the wandering pitch, integrated (~1/f spectral tilt)
    pulses = (np.diff(np.floor(np.cumsum(f0) / sr), prepend=0.0) > 0).astype(np.float64)
    src = butter(signal.lfilter([1.0], [1.0, -0.97], pulses), sr, 80.0, "highpass", 2)
    syl = uniform(rng, (3.0, 6.0))
    out = np.zeros(n)
    seg = round(sr / syl)
    for s in range(0, n, seg):
        e = min(n, s + seg)
        chunk = src[s:e] * np.hanning(e - s)
        for fc in (uniform(rng, (300.0, 900.0)), uniform(rng, (900.0, 2500.0))):
            b, a = signal.iirpeak(fc, 5.0, fs=sr)
            out[s:e] += signal.lfilter(b, a, chunk)
    return out


def babble(rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE, duration: float = 10.0) -> np.ndarray:
    """Babble-like crowd noise: many overlapping pseudo-voices plus speech-shaped noise, unintelligible."""
    n = round(duration * sample_rate)
    voices = sum(_pseudo_voice(rng, n, sample_rate) * uniform(rng, (0.3, 1.0)) for _ in range(int(rng.integers(6, 12))))
    shaped = butter(coloured_noise(rng, n, 1.0), sample_rate, (200.0, 3500.0), "bandpass", 2)
    x = voices / (np.std(voices) + 1e-9) + uniform(rng, (0.3, 1.0)) * shaped / (np.std(shaped) + 1e-9)
    return normalize(butter(x, sample_rate, 4000.0, "lowpass", 2))


def rumble(rng: np.random.Generator, sample_rate: int = DEFAULT_SAMPLE_RATE, duration: float = 10.0) -> np.ndarray:
    """Traffic/ventilation rumble: low-passed brown noise with slow amplitude modulation."""
    n = round(duration * sample_rate)
    x = butter(coloured_noise(rng, n, 2.0), sample_rate, uniform(rng, (150.0, 600.0)), "lowpass", 2)
    t = np.arange(n) / sample_rate
    mod = 1 + 0.4 * np.sin(2 * np.pi * uniform(rng, (0.05, 0.3)) * t + rng.uniform(0, 6.3))
    return normalize(x * mod)


BACKGROUNDS: dict[str, Callable[..., np.ndarray]] = {
    "white": lambda rng, sr=DEFAULT_SAMPLE_RATE, duration=10.0: noise(rng, sr, duration, 0.0),
    "pink": lambda rng, sr=DEFAULT_SAMPLE_RATE, duration=10.0: noise(rng, sr, duration, 1.0),
    "brown": lambda rng, sr=DEFAULT_SAMPLE_RATE, duration=10.0: noise(rng, sr, duration, 2.0),
    "noise": noise,
    "hum": hum,
    "rain": rain,
    "babble": babble,
    "rumble": rumble,
}
