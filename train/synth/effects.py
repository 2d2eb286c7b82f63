"""Acoustic effects for scene synthesis: synthetic room reverb, EQ, device colouration, gain, SNR.

The room impulse response is a direct path, sparse early reflections (2-40 ms) and a late tail of
exponentially decaying noise whose high band decays faster than the low band (air and wall
absorption), scaled to a drawn direct-to-reverberant ratio.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .core import DEFAULT_SAMPLE_RATE, Range, butter, choose, log_uniform, randint, resonator, uniform

DEVICES = ("phone_speaker", "laptop", "tv", "muffled")


def synthetic_rir(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    rt60_range: Range = (0.2, 1.0),
    drr_db_range: Range = (0.0, 12.0),
    early_reflections: tuple[int, int] = (3, 10),
) -> np.ndarray:
    """A random room impulse response (float64, direct path at sample 0 with amplitude 1)."""
    rt60 = uniform(rng, rt60_range)
    n = max(16, round(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    late = np.zeros(n)
    lo = butter(rng.standard_normal(n), sample_rate, 2000.0, "lowpass", 2)
    hi = rng.standard_normal(n) - lo
    late = lo * np.exp(-6.907755 * t / rt60) + hi * np.exp(-6.907755 * t / (rt60 * uniform(rng, (0.4, 0.8))))
    mixing = uniform(rng, (0.005, 0.02))
    late *= np.clip(t / mixing, 0.0, 1.0) ** 2
    early = np.zeros(n)
    for _ in range(randint(rng, early_reflections)):
        d = log_uniform(rng, (0.002, 0.04))
        i = min(n - 1, round(d * sample_rate))
        early[i] += rng.choice([-1.0, 1.0]) * uniform(rng, (0.2, 0.7)) * np.exp(-6.907755 * d / rt60)
    reverb = early + late / (np.sqrt(np.sum(late**2)) + 1e-12) * np.sqrt(max(np.sum(early**2), 1e-3))
    drr = uniform(rng, drr_db_range)
    reverb *= 10 ** (-drr / 20) / (np.sqrt(np.sum(reverb**2)) + 1e-12)
    h = reverb
    h[0] += 1.0
    return h


def apply_reverb(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a RIR; the output is ``len(x) + len(rir) - 1`` samples (the tail is kept)."""
    return signal.oaconvolve(np.asarray(x, dtype=np.float64), rir)


def peaking_eq(x: np.ndarray, sample_rate: int, freq: float, gain_db: float, q: float) -> np.ndarray:
    """RBJ-cookbook peaking equaliser."""
    A = 10 ** (gain_db / 40)
    w = 2 * np.pi * min(freq, 0.45 * sample_rate) / sample_rate
    alpha = np.sin(w) / (2 * q)
    b = [1 + alpha * A, -2 * np.cos(w), 1 - alpha * A]
    a = [1 + alpha / A, -2 * np.cos(w), 1 - alpha / A]
    return signal.lfilter(b, a, x)


def shelf_eq(x: np.ndarray, sample_rate: int, freq: float, gain_db: float, high: bool) -> np.ndarray:
    """RBJ-cookbook low or high shelf (slope 1)."""
    A = 10 ** (gain_db / 40)
    w = 2 * np.pi * min(freq, 0.45 * sample_rate) / sample_rate
    alpha = np.sin(w) / 2 * np.sqrt(2)
    c, s2 = np.cos(w), 2 * np.sqrt(A) * alpha
    if high:
        b = [A * ((A + 1) + (A - 1) * c + s2), -2 * A * ((A - 1) + (A + 1) * c), A * ((A + 1) + (A - 1) * c - s2)]
        a = [(A + 1) - (A - 1) * c + s2, 2 * ((A - 1) - (A + 1) * c), (A + 1) - (A - 1) * c - s2]
    else:
        b = [A * ((A + 1) - (A - 1) * c + s2), 2 * A * ((A - 1) - (A + 1) * c), A * ((A + 1) - (A - 1) * c - s2)]
        a = [(A + 1) + (A - 1) * c + s2, -2 * ((A - 1) + (A + 1) * c), (A + 1) + (A - 1) * c - s2]
    return signal.lfilter(b, a, x)


def random_eq(
    rng: np.random.Generator,
    x: np.ndarray,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    gain_db_range: Range = (-6.0, 6.0),
    bands: tuple[int, int] = (1, 3),
) -> np.ndarray:
    """Random colouration: 1-3 peaking bands plus low and high shelves with gains in ``gain_db_range``."""
    y = np.asarray(x, dtype=np.float64)
    for _ in range(randint(rng, bands)):
        y = peaking_eq(
            y, sample_rate, log_uniform(rng, (100.0, 8000.0)), uniform(rng, gain_db_range), uniform(rng, (0.5, 3.0))
        )
    y = shelf_eq(y, sample_rate, log_uniform(rng, (80.0, 400.0)), uniform(rng, gain_db_range), high=False)
    return shelf_eq(y, sample_rate, log_uniform(rng, (3000.0, 10000.0)), uniform(rng, gain_db_range), high=True)


def device_colouration(
    rng: np.random.Generator, x: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE, kind: str | None = None
) -> np.ndarray:
    """Playback/capture device character: ``phone_speaker`` (300-3400 Hz, resonant, slightly clipped),
    ``laptop`` (thin, 3 kHz presence), ``tv`` (100 Hz-8 kHz) or ``muffled`` (heard through a wall/door)."""
    kind = kind or choose(rng, DEVICES)
    y = np.asarray(x, dtype=np.float64)
    if kind == "phone_speaker":
        y = butter(y, sample_rate, (uniform(rng, (250.0, 500.0)), uniform(rng, (3200.0, 4500.0))), "bandpass", 3)
        y = y + resonator(y, sample_rate, uniform(rng, (900.0, 2500.0)), 2.0)
        peak = np.max(np.abs(y)) + 1e-12
        y = np.tanh(uniform(rng, (1.0, 3.0)) * y / peak) * peak
    elif kind == "laptop":
        y = butter(y, sample_rate, uniform(rng, (180.0, 350.0)), "highpass", 3)
        y = peaking_eq(y, sample_rate, uniform(rng, (2000.0, 4000.0)), uniform(rng, (3.0, 8.0)), 1.5)
    elif kind == "tv":
        y = butter(y, sample_rate, (uniform(rng, (80.0, 150.0)), uniform(rng, (6000.0, 9000.0))), "bandpass", 2)
    elif kind == "muffled":
        y = butter(y, sample_rate, uniform(rng, (600.0, 2000.0)), "lowpass", 2)
    else:
        raise ValueError(f"unknown device {kind!r}; expected one of {DEVICES}")
    return y


def gain_db(x: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels."""
    return x * 10 ** (db / 20)


def power(x: np.ndarray) -> float:
    """Mean square of ``x`` (0 for an empty array)."""
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def snr_gain(signal_power: float, noise_power: float, snr_db: float) -> float:
    """Linear gain to apply to a signal of ``signal_power`` so its SNR over ``noise_power`` is ``snr_db``."""
    if signal_power <= 0:
        return 0.0
    return float(np.sqrt(max(noise_power, 1e-20) * 10 ** (snr_db / 10) / signal_power))


def mask_from_segments(n: int, sample_rate: int, segments: list[tuple[float, float]]) -> np.ndarray:
    """Boolean sample mask that is True inside ``segments`` (seconds)."""
    m = np.zeros(n, dtype=bool)
    for a, b in segments:
        m[max(0, round(a * sample_rate)) : max(0, min(n, round(b * sample_rate)))] = True
    return m


def measured_snr(foreground: np.ndarray, background: np.ndarray, mask: np.ndarray) -> float:
    """SNR (dB) of ``foreground`` over ``background`` within the sample ``mask`` (the event's active part)."""
    return 10 * np.log10(power(foreground[mask]) / max(power(background[mask]), 1e-20))
