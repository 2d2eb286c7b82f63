"""Single-producer / single-consumer ring buffer addressed by absolute sample positions.

The producer (an audio callback) writes blocks at absolute frame positions; the consumer (the
inference side) reads ranges by absolute position. Nothing here allocates on the write path or
takes a lock, so a PortAudio callback can call :meth:`RingBuffer.write` safely.

Rules that keep the timeline aligned with real time:

- A block written *after* a gap (``at`` > current end) zero-fills the gap; the gap's frames are
  counted in :attr:`RingBuffer.gap_frames` (input that never arrived, e.g. a PortAudio overflow).
- The writer never waits for the reader. When the reader falls more than ``capacity`` frames
  behind, the oldest frames are overwritten; :meth:`read_into` returns those frames as zeros and
  reports how many it lost (overrun), so a slow consumer loses audio but never shifts the clock.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """A fixed ``[capacity, channels]`` float32 ring indexed by absolute frame positions (0, 1, 2, ...)."""

    def __init__(self, capacity: int, channels: int = 1, dtype: type = np.float32, guard: int = 0) -> None:
        """``guard``: frames at the overwrite edge that the reader treats as lost because a write of up
        to that size may be in flight while it copies (set it to the largest block the producer writes)."""
        if capacity <= 0 or channels <= 0 or not 0 <= guard < capacity:
            raise ValueError("capacity and channels must be positive and 0 <= guard < capacity")
        self.capacity = int(capacity)
        self.guard = int(guard)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype)
        self._end = 0  # absolute position one past the newest written frame (published after the copy)
        self.gap_frames = 0  # frames zero-filled because the producer skipped ahead (lost input)

    @property
    def end(self) -> int:
        """Absolute position one past the newest frame written so far."""
        return self._end

    def _store(self, block: np.ndarray | None, start: int, n: int) -> None:
        """Copy ``block`` (or zeros when None) of ``n`` frames to absolute position ``start``."""
        i = start % self.capacity
        first = min(n, self.capacity - i)
        if block is None:
            self._buf[i : i + first] = 0.0
            if n > first:
                self._buf[: n - first] = 0.0
        else:
            self._buf[i : i + first] = block[:first]
            if n > first:
                self._buf[: n - first] = block[first:n]

    def write(self, block: np.ndarray, at: int | None = None) -> None:
        """Producer: write ``block`` ([frames, channels] or [frames] when mono) at absolute position ``at``.

        ``at=None`` appends. A position past the end zero-fills the gap and counts it as lost; a
        position before the end drops the overlapping head of the block (the clock never goes back).
        Never allocates, never blocks.
        """
        if block.ndim == 1:
            block = block.reshape(-1, 1)
        n = block.shape[0]
        end = self._end
        if at is None or at == end:
            at = end
        elif at > end:
            gap = at - end
            self.gap_frames += gap
            fill = min(gap, self.capacity)
            self._store(None, at - fill, fill)
        else:  # overlaps what was already written: keep the clock monotonic
            skip = end - at
            if skip >= n:
                return
            block = block[skip:]
            n -= skip
            at = end
        if n > self.capacity:
            block = block[n - self.capacity :]
            at += n - self.capacity
            n = self.capacity
        self._store(block, at, n)
        self._end = at + n  # publish last: the reader never sees frames before they are copied

    def read_into(self, out: np.ndarray, start: int) -> int:
        """Consumer: copy frames ``[start, start + len(out))`` into ``out``; return how many were lost.

        Positions before 0 read as zeros (not lost). Positions at or past :attr:`end` must not be
        requested. Frames already overwritten by the producer (reader more than ``capacity``
        behind) read as zeros and count as lost.
        """
        n = out.shape[0]
        if out.ndim == 1:
            out = out.reshape(-1, 1)
        if start + n > self._end:
            raise ValueError(f"read past the written end ({start + n} > {self._end})")
        out[:] = 0.0
        lo = max(start, 0)
        if lo >= start + n:
            return 0
        i = lo % self.capacity
        m = start + n - lo
        first = min(m, self.capacity - i)
        dst = out[lo - start :]
        dst[:first] = self._buf[i : i + first]
        if m > first:
            dst[first:m] = self._buf[: m - first]
        # frames the producer may have overwritten while (or before) we copied them
        oldest_valid = self._end - self.capacity + self.guard
        lost = min(max(oldest_valid - lo, 0), m)
        if lost:
            dst[:lost] = 0.0
        return lost
