"""The stream timeline and the stitching of overlapping window predictions into one score track.

Timeline (all in samples at the model's sample rate, counted from the first sample of the stream):

- ``W`` = ``window_samples``, ``s`` = W / steps: one framewise step.
- The hop ``H`` is the requested hop rounded to a multiple of a quantum ``q`` (the largest divisor
  of ``s`` not above 10 ms), at least ``q`` and at most ``W``. Window ``k = 1, 2, ...`` covers
  ``[k*H - W, k*H)``; samples before 0 are zeros (zero history before the first full window).
- The score track has frames of ``g = gcd(H, s)`` samples. Every window boundary and every step
  boundary falls on a frame boundary, so a frame lies inside exactly one step of every window that
  covers it and takes that step's value. Events are timed on this frame grid.

Stitching rule (documented contract):

    The score of frame ``j`` (covering ``[a, b)``) is the *mean* of the predictions of the windows
    that cover it and end no later than ``ceil(b / H) * H + n_look * H``, where ``ceil(b/H)*H`` is
    the end of the first window that covers the frame and ``n_look = floor(lookahead / H)`` is the
    number of extra hops of lookahead. Frames no window covered (windows skipped by the live
    scheduler's lag rule) score 0.

So with ``lookahead = 0`` a frame gets exactly one prediction, from the first window that contains
it (where it sits at the window's right edge: the most causal choice, lowest latency). Each hop of
lookahead adds one later window, in which the frame sits further from the edge with more context
after it; averaging them trades latency for accuracy. A frame's score is final as soon as window
``k0 + n_look`` has been evaluated, i.e. after at most ``H + n_look*H`` samples of audio past the
frame, which bounds the onset latency by ``hop + lookahead`` (plus compute). Each evaluated window
finalises exactly one hop of frames. The rule only depends on window indices, never on how the
audio was chunked, which makes the track (and the events) chunking-independent.

End of stream (``N`` samples): windows up to ``ceil(N / H)`` are evaluated (the last one padded
with zeros after ``N``), windows starting after the end are not, and the remaining frames are
finalised with the windows they have. The last frame is cut at ``N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .model_metadata import ModelMetadata


@dataclass(frozen=True)
class Timeline:
    """Window, hop and frame geometry of a stream, in model-rate samples."""

    sample_rate: int
    window: int
    step: int
    hop: int
    frame: int
    lookahead_hops: int

    @classmethod
    def create(cls, meta: ModelMetadata, hop: float, lookahead: float = 0.0) -> Timeline:
        """Quantise ``hop``/``lookahead`` (seconds) for ``meta`` as the module docstring describes."""
        return cls.for_window(meta.sample_rate, meta.window_samples, meta.steps_per_window, hop, lookahead)

    @classmethod
    def for_window(cls, sample_rate: int, window_samples: int, steps: int, hop: float,
                   lookahead: float = 0.0) -> Timeline:
        """The timeline of a model with ``steps`` framewise steps per window of ``window_samples`` samples at
        ``sample_rate`` (what :meth:`create` reads from the metadata; training validation passes it directly)."""
        if not (hop > 0 and math.isfinite(hop)):
            raise ValueError(f"hop must be a positive number of seconds, got {hop}")
        if not (lookahead >= 0 and math.isfinite(lookahead)):
            raise ValueError(f"lookahead must be >= 0 seconds, got {lookahead}")
        sr, W = int(sample_rate), int(window_samples)
        step = W // steps
        quantum = max(d for d in _divisors(step) if d <= max(1, sr // 100))
        hop_samples = max(quantum, round(hop * sr / quantum) * quantum)
        if hop_samples > W:
            raise ValueError(f"hop {hop} s is longer than the model window ({W / sr} s)")
        frame = math.gcd(hop_samples, step)
        look = math.floor(lookahead * sr / hop_samples + 1e-9)
        return cls(sr, W, step, hop_samples, frame, look)

    @property
    def hop_seconds(self) -> float:
        """The effective hop in seconds."""
        return self.hop / self.sample_rate

    @property
    def frame_seconds(self) -> float:
        """Duration of one score-track frame."""
        return self.frame / self.sample_rate

    @property
    def lookahead_seconds(self) -> float:
        """The effective lookahead (whole hops) in seconds."""
        return self.lookahead_hops * self.hop / self.sample_rate

    @property
    def frames_per_hop(self) -> int:
        """Frames finalised by each window."""
        return self.hop // self.frame

    def windows_due(self, received: int) -> int:
        """Index of the last window whose audio is complete after ``received`` samples."""
        return received // self.hop

    def windows_at_end(self, total: int) -> int:
        """Index of the last window evaluated when a stream of ``total`` samples ends."""
        return -(-total // self.hop)


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


class Stitcher:
    """Accumulates window predictions (by window index) and releases finalised frames in order."""

    def __init__(self, timeline: Timeline, num_classes: int) -> None:
        self.t = timeline
        self.num_classes = num_classes
        fph = timeline.frames_per_hop
        self._cap = (timeline.lookahead_hops + 1) * fph
        self._sum = np.zeros((self._cap, num_classes), np.float64)
        self._count = np.zeros(self._cap, np.int32)
        self._base = 0  # absolute index of the first frame not yet finalised
        self._repeat = timeline.step // timeline.frame
        self._frames_per_window = timeline.window // timeline.frame

    def add(self, k: int, framewise: np.ndarray) -> tuple[int, np.ndarray]:
        """Add window ``k``'s framewise [steps, C]; return ``(first_frame, scores [n, C])`` now final."""
        fph = self.t.frames_per_hop
        first, done = self._finalize((k - self.t.lookahead_hops - 1) * fph)
        per_frame = np.repeat(framewise.astype(np.float64, copy=False), self._repeat, axis=0)
        end = k * fph  # frame index one past the window's last frame
        start = end - self._frames_per_window
        lo = max(start, self._base)
        if lo < end:
            self._sum[lo - self._base : end - self._base] += per_frame[lo - start :]
            self._count[lo - self._base : end - self._base] += 1
        _, more = self._finalize((k - self.t.lookahead_hops) * fph)
        if done.shape[0] == 0:
            return first, more
        return first, np.concatenate([done, more])

    def flush(self, total_samples: int) -> tuple[int, np.ndarray]:
        """Finalise every frame up to the end of a ``total_samples`` stream (end-of-stream rule)."""
        first = self._base
        last = -(-total_samples // self.t.frame)
        chunks = []
        while self._base < last:
            _, part = self._finalize(min(last, self._base + self._cap))
            chunks.append(part)
        if not chunks:
            return first, np.zeros((0, self.num_classes), np.float32)
        return first, np.concatenate(chunks)

    def _finalize(self, upto: int) -> tuple[int, np.ndarray]:
        """Release frames ``[base, upto)``; frames beyond the buffer were never covered (score 0)."""
        first = self._base
        n = upto - self._base
        if n <= 0:
            return first, np.zeros((0, self.num_classes), np.float32)
        m = min(n, self._cap)
        out = np.zeros((n, self.num_classes), np.float32)
        counts = self._count[:m]
        covered = counts > 0
        out[:m][covered] = (self._sum[:m][covered] / counts[covered, None]).astype(np.float32)
        # shift the accumulators
        self._sum[: self._cap - m] = self._sum[m:].copy()
        self._sum[self._cap - m :] = 0.0
        self._count[: self._cap - m] = self._count[m:].copy()
        self._count[self._cap - m :] = 0
        self._base = upto
        return first, out


def stitch_windows(timeline: Timeline, framewise: np.ndarray, total_samples: int) -> np.ndarray:
    """The score track ``[frames, C]`` of a whole stream of ``total_samples`` samples, offline: ``framewise[k - 1]``
    is window ``k``'s prediction ``[steps, C]`` for ``k = 1 .. timeline.windows_at_end(total_samples)``.

    Exactly what a :class:`~streamdet.stream.Stream` computes (same :class:`Stitcher`, same end-of-stream rule),
    for callers that evaluate the windows themselves (training validation)."""
    windows = np.asarray(framewise)
    expected = timeline.windows_at_end(total_samples)
    if windows.ndim != 3 or windows.shape[0] != expected:
        raise ValueError(f"expected the predictions of {expected} windows [K, steps, C], got {windows.shape}")
    stitcher = Stitcher(timeline, windows.shape[2])
    parts = [stitcher.add(k, windows[k - 1])[1] for k in range(1, expected + 1)]
    parts.append(stitcher.flush(total_samples)[1])
    limit = -(-total_samples // timeline.frame)  # frames past the end are not part of the track
    return np.concatenate(parts)[:limit]
