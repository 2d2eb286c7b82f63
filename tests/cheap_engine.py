"""A model-free :class:`~streamdet.engine.Engine` whose runner costs next to nothing, for tests and benchmarks of
the engine's own bookkeeping (memory, copying, scheduling) over hours of audio.

The runner scores each framewise step by its mean absolute amplitude (times ``gain``, clipped to 1), so a loud
burst is an event of class ``"loud"``: what :func:`bursts` plants. Geometry defaults to the bundled model's
(32 kHz, 10 s window, 32 steps)."""

from __future__ import annotations

import numpy as np

from streamdet.engine import Engine
from streamdet.postprocess import PostProcessing
from streamdet.stitching import Timeline

LABELS = ("loud",)


def energy_engine(sample_rate: int = 32000, window_s: float = 10.0, steps: int = 32, hop: float = 0.5,
                  batch_limit: int = 16, gain: float = 10.0) -> Engine:
    """An Engine with the energy runner (see the module docstring)."""
    window = round(window_s * sample_rate)
    timeline = Timeline.for_window(sample_rate, window, steps, hop)

    def runner(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[0]
        step_level = np.abs(x[:, : (window // steps) * steps]).reshape(n, steps, -1)[:, :, ::64].mean(axis=2)
        framewise = np.minimum(step_level * gain, 1.0).astype(np.float32)[:, :, None]
        return framewise, framewise.max(axis=1)

    return Engine(timeline, LABELS, PostProcessing.resolve(LABELS), runner, batch_limit)


def bursts(seconds: float, sample_rate: int, every: float = 60.0, length: float = 5.0, seed: int = 0) -> np.ndarray:
    """``seconds`` of quiet noise (float32) with a loud noise burst of ``length`` s every ``every`` s."""
    rng = np.random.default_rng(seed)
    x = (0.001 * rng.standard_normal(round(seconds * sample_rate))).astype(np.float32)
    for start in np.arange(every / 2, seconds - length, every):
        a = round(start * sample_rate)
        x[a : a + round(length * sample_rate)] *= 300.0
    return x
