"""Shared DSP building blocks for the procedural generators (numpy/scipy only).

Every generator returns a :class:`Sound`: the dry mono waveform (float32) and the tight list of
``(onset, offset)`` segments, in seconds from the start of the returned audio, where the sound is
actually sounding. The scene synthesiser turns segments into strong labels (merging short gaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import signal

DEFAULT_SAMPLE_RATE = 32000

Range = tuple[float, float]


@dataclass
class Sound:
    """A generated sound: dry audio plus where it is active.

    ``segments`` are sorted, non-overlapping ``(onset, offset)`` pairs in seconds relative to the
    start of ``audio``. ``info`` records the drawn parameters (kind, frequencies, ...) for manifests.
    """

    audio: np.ndarray
    segments: list[tuple[float, float]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def onset(self) -> float:
        """Start of the first active segment (seconds)."""
        return self.segments[0][0] if self.segments else 0.0

    @property
    def offset(self) -> float:
        """End of the last active segment (seconds)."""
        return self.segments[-1][1] if self.segments else 0.0

    @property
    def extent(self) -> tuple[float, float]:
        """``(onset, offset)`` of the whole event."""
        return self.onset, self.offset


def uniform(rng: np.random.Generator, r: Range | float) -> float:
    """Draw uniformly from ``r = (lo, hi)``; a scalar is returned unchanged."""
    if isinstance(r, (int, float)):
        return float(r)
    lo, hi = r
    return float(lo) if hi <= lo else float(rng.uniform(lo, hi))


def log_uniform(rng: np.random.Generator, r: Range | float) -> float:
    """Draw log-uniformly from a positive range (good for frequencies and times)."""
    if isinstance(r, (int, float)):
        return float(r)
    lo, hi = r
    return float(lo) if hi <= lo else float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def randint(rng: np.random.Generator, r: tuple[int, int] | int) -> int:
    """Draw an integer from the inclusive range ``r = (lo, hi)``."""
    if isinstance(r, int):
        return r
    lo, hi = r
    return int(rng.integers(lo, hi + 1))


def choose(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    """Pick one element of ``options`` uniformly."""
    return options[int(rng.integers(len(options)))]


def phase_from_freq(freq: np.ndarray | float, n: int, sample_rate: int, phase0: float = 0.0) -> np.ndarray:
    """Running phase (radians) of an oscillator whose instantaneous frequency is ``freq`` (Hz)."""
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    return phase0 + 2.0 * np.pi * np.cumsum(f) / sample_rate


def harmonic_wave(
    phase: np.ndarray,
    amps: Sequence[float],
    freq: np.ndarray | float,
    sample_rate: int,
    harmonic_phases: Sequence[float] | None = None,
) -> np.ndarray:
    """Sum of harmonics ``sum_k amps[k-1] * sin(k * phase)``, band-limited below 0.45 * sample rate.

    ``freq`` (scalar or per-sample) is the fundamental; harmonics near Nyquist fade out smoothly.
    """
    nyq = 0.45 * sample_rate
    f = np.asarray(freq, dtype=np.float64)
    out = np.zeros(phase.shape, dtype=np.float64)
    for k, a in enumerate(amps, start=1):
        if a == 0.0:
            continue
        w = np.clip((nyq - k * f) / (0.05 * sample_rate), 0.0, 1.0)
        if np.all(w == 0):
            break
        ph = 0.0 if harmonic_phases is None else harmonic_phases[k - 1]
        out += a * w * np.sin(k * phase + ph)
    return out


def saw_amps(n: int, tilt: float = 1.0) -> list[float]:
    """Harmonic amplitudes ``1 / k**tilt`` (tilt 1 is a sawtooth)."""
    return [1.0 / k**tilt for k in range(1, n + 1)]


def pulse_amps(n: int, duty: float, tilt: float = 1.0) -> list[float]:
    """Harmonic amplitudes of a pulse wave with the given duty cycle (0.5 is a square wave)."""
    return [abs(np.sin(np.pi * k * duty)) / k**tilt for k in range(1, n + 1)]


def gate(
    n: int,
    sample_rate: int,
    segments: Sequence[tuple[float, float]],
    attack: float = 0.005,
    release: float = 0.01,
) -> np.ndarray:
    """Envelope that is 1 inside ``segments`` (seconds) with raised-cosine attack/release ramps."""
    env = np.zeros(n, dtype=np.float64)
    for on, off in segments:
        a, b = max(0, round(on * sample_rate)), min(n, round(off * sample_rate))
        if b <= a:
            continue
        seg = np.ones(b - a)
        na = min(max(1, round(attack * sample_rate)), (b - a) // 2)
        nr = min(max(1, round(release * sample_rate)), (b - a) // 2)
        if na > 0:
            seg[:na] = 0.5 - 0.5 * np.cos(np.pi * np.arange(na) / na)
        if nr > 0:
            seg[-nr:] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(nr) + 1) / nr)
        env[a:b] = np.maximum(env[a:b], seg)
    return env


def exp_decay(n: int, sample_rate: int, t60: float, start: int = 0) -> np.ndarray:
    """Exponential decay reaching -60 dB after ``t60`` seconds, zero before ``start`` (samples)."""
    env = np.zeros(n, dtype=np.float64)
    if start >= n:
        return env
    t = np.arange(n - start) / sample_rate
    env[start:] = np.exp(-6.907755 * t / max(t60, 1e-4))
    return env


def damped_modes(
    n: int,
    sample_rate: int,
    freqs: Sequence[float],
    amps: Sequence[float],
    t60s: Sequence[float],
    start: int = 0,
    phases: Sequence[float] | None = None,
    length: int | None = None,
) -> np.ndarray:
    """Sum of exponentially decaying sinusoids (modal synthesis) starting at sample ``start``.

    Only ``length`` samples after ``start`` are computed (default: up to -60 dB of the slowest mode).
    """
    out = np.zeros(n, dtype=np.float64)
    if start >= n:
        return out
    if length is None:
        length = round(max(t60s) * sample_rate) if len(t60s) else 0
    stop = min(n, start + length)
    t = np.arange(stop - start) / sample_rate
    for i, (f, a, t60) in enumerate(zip(freqs, amps, t60s, strict=True)):
        if f >= 0.45 * sample_rate or a == 0.0:
            continue
        ph = 0.0 if phases is None else phases[i]
        out[start:stop] += a * np.exp(-6.907755 * t / max(t60, 1e-4)) * np.sin(2 * np.pi * f * t + ph)
    return out


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    white = rng.standard_normal(n)
    if exponent == 0:
        return white / (np.std(white) + 1e-12)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    spec *= f ** (-exponent / 2.0)
    x = np.fft.irfft(spec, n)
    x -= x.mean()
    return x / (np.std(x) + 1e-12)


def butter(
    x: np.ndarray, sample_rate: int, cutoff: float | tuple[float, float], btype: str, order: int = 4
) -> np.ndarray:
    """Zero-latency (causal) Butterworth filter; cutoffs are clamped inside (10 Hz, 0.49 * sr)."""
    nyq = sample_rate / 2.0

    def clamp(c: float) -> float:
        return float(min(max(c, 10.0), 0.98 * nyq))

    wn = (clamp(cutoff[0]), clamp(cutoff[1])) if isinstance(cutoff, tuple) else clamp(cutoff)
    sos = signal.butter(order, wn, btype=btype, fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x)


def resonator(x: np.ndarray, sample_rate: int, freq: float, q: float) -> np.ndarray:
    """Second-order band-pass resonance (peak gain 1) at ``freq`` with quality factor ``q``."""
    b, a = signal.iirpeak(min(freq, 0.45 * sample_rate), q, fs=sample_rate)
    return signal.lfilter(b, a, x)


def normalize(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    """Scale to the given absolute peak and return float32 (silence stays silence)."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    y = x * (peak / m) if m > 0 else x
    return y.astype(np.float32)


def frame_rms_db(x: np.ndarray, sample_rate: int, hop: float = 0.01, win: float = 0.02) -> np.ndarray:
    """Short-time RMS level in dB (one value per ``hop`` seconds, window ``win``)."""
    h = max(1, round(hop * sample_rate))
    w = max(h, round(win * sample_rate))
    n_frames = max(1, int(np.ceil(len(x) / h)))
    pad = np.concatenate([np.asarray(x, dtype=np.float64), np.zeros(w)])
    c = np.concatenate([[0.0], np.cumsum(pad**2)])
    starts = np.arange(n_frames) * h
    energy = (c[starts + w] - c[starts]) / w
    return 10.0 * np.log10(energy + 1e-20)


def active_segments(
    x: np.ndarray,
    sample_rate: int,
    threshold_db: float = -35.0,
    min_gap: float = 0.05,
    hop: float = 0.01,
) -> list[tuple[float, float]]:
    """Segments where the short-time level is within ``threshold_db`` of the loudest frame.

    Used for sounds whose extent is not known analytically (decays, speech). Gaps shorter than
    ``min_gap`` seconds are bridged.
    """
    if not np.any(x):
        return []
    db = frame_rms_db(x, sample_rate, hop=hop, win=2 * hop)
    act = db >= db.max() + threshold_db
    idx = np.flatnonzero(np.diff(np.concatenate([[0], act.astype(np.int8), [0]])))
    end = len(x) / sample_rate
    segs = [(float(s * hop), float(min(e * hop + hop, end))) for s, e in zip(idx[::2], idx[1::2], strict=True)]
    return merge_segments(segs, min_gap)


def merge_segments(segments: Sequence[tuple[float, float]], max_gap: float) -> list[tuple[float, float]]:
    """Sort segments and merge those separated by gaps of at most ``max_gap`` seconds."""
    out: list[tuple[float, float]] = []
    for on, off in sorted(segments):
        if out and on - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], max(out[-1][1], off))
        else:
            out.append((float(on), float(off)))
    return out


def shift_segments(segments: Sequence[tuple[float, float]], dt: float) -> list[tuple[float, float]]:
    """Add ``dt`` seconds to every segment."""
    return [(a + dt, b + dt) for a, b in segments]


def pattern_segments(
    pattern: Sequence[tuple[float, float]], cycles: int, start: float = 0.0
) -> list[tuple[float, float]]:
    """Expand an on/off cadence ``[(on_s, off_s), ...]`` repeated ``cycles`` times into on-segments."""
    segs = []
    t = start
    for _ in range(cycles):
        for on, off in pattern:
            segs.append((t, t + on))
            t += on + off
    return segs
