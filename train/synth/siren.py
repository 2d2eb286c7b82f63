"""Emergency-vehicle siren generator: wail, yelp, hi-lo and two-tone, with optional Doppler pass-by.

Electronic sirens drive horn loudspeakers with square-ish waves swept between roughly 500 and
1800 Hz (wail: a slow 3-6 s sweep; yelp: the same sweep at 3-7 Hz); hi-lo and two-tone alternate
two pitches (hi-lo ~960/770 Hz, two-tone a fourth apart ~440/585 Hz like the German Martinshorn).
A moving source is rendered physically: the received signal is the source evaluated at the
emission time ``t - r(t)/c`` (Doppler shift) with 1/r spreading and distance-dependent air
absorption.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from .core import (
    DEFAULT_SAMPLE_RATE,
    Range,
    Sound,
    active_segments,
    butter,
    choose,
    harmonic_wave,
    log_uniform,
    normalize,
    uniform,
)

KINDS = ("wail", "yelp", "hilo", "two_tone")
SPEED_OF_SOUND = 343.0


def _sweep_shape(phase01: np.ndarray, rise: float) -> np.ndarray:
    """Periodic 0..1..0 sweep; ``rise`` is the fraction of the period spent rising."""
    p = np.mod(phase01, 1.0)
    up = np.clip(p / rise, 0, 1)
    down = np.clip((1 - p) / (1 - rise), 0, 1)
    s = np.where(p < rise, up, down)
    return 0.5 - 0.5 * np.cos(np.pi * s)


def _frequency_track(
    rng: np.random.Generator,
    kind: str,
    t: np.ndarray,
    lo: float,
    hi: float,
    wail_period: Range,
    yelp_rate: Range,
    alt_period: Range,
) -> np.ndarray:
    """Instantaneous fundamental frequency of the siren at source times ``t``."""
    if kind == "wail":
        period = uniform(rng, wail_period)
        return lo + (hi - lo) * _sweep_shape(t / period + rng.random(), uniform(rng, (0.5, 0.75)))
    if kind == "yelp":
        rate = uniform(rng, yelp_rate)
        return lo + (hi - lo) * _sweep_shape(t * rate + rng.random(), uniform(rng, (0.6, 0.85)))
    half = uniform(rng, alt_period) / 2.0
    if kind == "hilo":
        f_hi = uniform(rng, (850.0, 1050.0))
        f_lo = f_hi / uniform(rng, (1.18, 1.3))
    else:  # two_tone: a fourth apart, low tone ~ 360-500 Hz
        f_lo = uniform(rng, (360.0, 500.0))
        f_hi = f_lo * uniform(rng, (1.30, 1.38))
    sq = np.floor(t / half + rng.random()) % 2
    # smooth the steps a little (10 ms) so the pitch glides like a real siren driver
    k = max(1, int(0.01 * len(t) / max(t[-1] - t[0], 1e-3)))
    sq = uniform_filter1d(sq, k, mode="nearest")
    return f_lo + (f_hi - f_lo) * sq


def generate(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    kind: str | None = None,
    duration_range: Range = (3.0, 10.0),
    low_range: Range = (500.0, 800.0),
    high_range: Range = (1250.0, 1800.0),
    wail_period_range: Range = (2.5, 6.0),
    yelp_rate_range: Range = (2.5, 7.0),
    alt_period_range: Range = (0.8, 2.0),
    doppler_prob: float = 0.5,
    speed_range: Range = (8.0, 30.0),
    distance_range: Range = (5.0, 40.0),
) -> Sound:
    """Generate a siren of ``kind`` (random if None), optionally passing by with Doppler."""
    kind = kind or choose(rng, KINDS)
    dur = uniform(rng, duration_range)
    n = round(dur * sample_rate)
    t = np.arange(n) / sample_rate
    doppler = rng.random() < doppler_prob
    if doppler:
        v, d = uniform(rng, speed_range), log_uniform(rng, distance_range)
        t0 = uniform(rng, (0.2 * dur, 0.8 * dur))

        def dist(tt: np.ndarray) -> np.ndarray:
            return np.sqrt(d**2 + (v * (tt - t0)) ** 2)

        tau = t - dist(t) / SPEED_OF_SOUND
        tau = t - dist(tau) / SPEED_OF_SOUND  # one fixed-point refinement of the emission time
        r = dist(tau)
    else:
        tau, r = t, None
    # source signal on a regular grid of emission times, then read at the emission times
    grid = np.linspace(tau[0] - 0.01, tau[-1] + 0.01, n + 64)
    dt = grid[1] - grid[0]
    f_src = _frequency_track(
        rng,
        kind,
        grid,
        uniform(rng, low_range),
        uniform(rng, high_range),
        wail_period_range,
        yelp_rate_range,
        alt_period_range,
    )
    phase_src = 2 * np.pi * np.cumsum(f_src) * dt
    phase = np.interp(tau, grid, phase_src)
    f_recv = np.interp(tau, grid, f_src) * np.gradient(tau, t)
    tilt = uniform(rng, (0.8, 1.6))
    even = uniform(rng, (0.05, 0.8))
    amps = [(1.0 if k % 2 else even) / k**tilt for k in range(1, 16)]
    x = harmonic_wave(phase, amps, f_recv, sample_rate)
    x = butter(x, sample_rate, (uniform(rng, (250.0, 450.0)), uniform(rng, (4000.0, 7000.0))), "bandpass", 2)
    if r is not None:
        gain = r.min() / r
        lp = butter(x, sample_rate, 1500.0, "lowpass", 2)
        absorb = np.clip(r.min() / r, 0.0, 1.0) ** 0.5
        x = gain * (lp + absorb * (x - lp))
    info = {"kind": kind, "doppler": bool(doppler)}
    segs = active_segments(x, sample_rate, threshold_db=-30.0, min_gap=0.3)
    return Sound(normalize(x), segs, info)
