"""Event tracking: turn finalised score-track frames into onset and offset updates, per class.

Per class, a small state machine runs over the (median-filtered) frames in order:

- *idle* → *active* when the score is >= ``on``; the event's onset is that frame's start.
- *active* → *gap* when the score drops below ``off``; the candidate offset is that frame's start.
- *gap* → *active* when the score is back >= ``on`` within the class's ``min_gap`` frames (merged event);
  otherwise the event ends at the candidate offset.
- An onset update is emitted once the event has lasted ``min_duration`` frames (immediately when
  0); events that end shorter than that are dropped without any update.
- At the end of a stream, an active event ends at the stream's end time; an event in *gap* at its
  candidate offset.

Confidence is the maximum raw (stitched, unfiltered) score over the event's active frames so far:
an onset update carries the maximum up to its emission, the offset update the final value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .events import Event, Update
from .postprocess import FrameRules, StreamingMedian


@dataclass
class _ClassState:
    active: bool = False
    onset: int = 0  # frame index
    gap_start: int | None = None  # frame where the score fell below `off`
    confirmed: bool = False
    confidence: float = 0.0


class EventTracker:
    """Consumes score frames ``[n, C]`` (absolute frame index of the first) and yields updates."""

    def __init__(
        self,
        labels: Sequence[str],
        post: FrameRules,
        frame_seconds: float,
        stream: str,
        wall_origin: float | None = None,
    ) -> None:
        self.labels = list(labels)
        self.post = post
        self.frame_seconds = frame_seconds
        self.stream = stream
        self.wall_origin = wall_origin  # wall-clock time of sample 0 (live input), else None
        self._median = StreamingMedian(post.median_frames, len(labels))
        self._states = [_ClassState() for _ in labels]
        self._next = 0  # absolute index of the next frame the state machine sees
        self.closed_events: list[Event] = []

    def _time(self, frame: int) -> float:
        return round(frame * self.frame_seconds, 9)

    def _update(self, kind: str, c: int, st: _ClassState, offset: float | None) -> Update:
        onset = self._time(st.onset)
        wall = None if self.wall_origin is None else self.wall_origin + onset
        return Update(kind, self.labels[c], onset, offset, round(st.confidence, 6), self.stream, wall)  # type: ignore[arg-type]

    def open_events(self) -> list[Event]:
        """Events whose onset was reported and which have not ended yet."""
        return [
            Event(self.labels[c], self._time(st.onset), None, round(st.confidence, 6), self.stream)
            for c, st in enumerate(self._states)
            if st.active and st.confirmed
        ]

    def push(self, frames: np.ndarray) -> list[Update]:
        """Feed final frames (the next ones in order); return the updates they trigger."""
        filtered, raw = self._median.push(frames)
        return self._run(filtered, raw)

    def close(self, end_seconds: float) -> list[Update]:
        """Flush the median filter and close every open event at ``end_seconds``."""
        filtered, raw = self._median.flush()
        updates = self._run(filtered, raw)
        for c, st in enumerate(self._states):
            if not st.active:
                continue
            end_frame = st.gap_start
            offset = self._time(end_frame) if end_frame is not None else round(end_seconds, 9)
            updates.extend(self._finish(c, st, offset, end_frame if end_frame is not None else None, end_seconds))
        return updates

    def _finish(
        self, c: int, st: _ClassState, offset: float, end_frame: int | None, end_seconds: float
    ) -> list[Update]:
        """End the event of class ``c`` at ``offset`` seconds; emit its updates if it is long enough."""
        out: list[Update] = []
        if not st.confirmed:
            duration_frames = (end_frame - st.onset) if end_frame is not None else None
            long_enough = (
                duration_frames >= self.post.min_duration_frames[c]
                if duration_frames is not None
                else end_seconds - self._time(st.onset) >= self.post.min_duration_frames[c] * self.frame_seconds - 1e-9
            )
            if long_enough:
                out.append(self._update("onset", c, st, None))
                st.confirmed = True
        if st.confirmed:
            out.append(self._update("offset", c, st, offset))
            self.closed_events.append(out[-1].event)
        self._states[c] = _ClassState()
        return out

    def _run(self, filtered: np.ndarray, raw: np.ndarray) -> list[Update]:
        updates: list[Update] = []
        post = self.post
        for row in range(filtered.shape[0]):
            j = self._next + row
            scores = filtered[row]
            for c, st in enumerate(self._states):
                s = scores[c]
                if not st.active:
                    if s >= post.on[c]:
                        self._states[c] = st = _ClassState(active=True, onset=j, confidence=float(raw[row, c]))
                        if post.min_duration_frames[c] <= 1:
                            st.confirmed = True
                            updates.append(self._update("onset", c, st, None))
                    continue
                if st.gap_start is None:
                    if s < post.off[c]:
                        st.gap_start = j
                    else:
                        st.confidence = max(st.confidence, float(raw[row, c]))
                elif s >= post.on[c]:
                    st.gap_start = None  # back within min_gap: merge
                    st.confidence = max(st.confidence, float(raw[row, c]))
                if st.gap_start is not None and j - st.gap_start + 1 > post.min_gap_frames[c]:
                    updates.extend(self._finish(c, st, self._time(st.gap_start), st.gap_start, 0.0))
                    continue
                if not st.confirmed and j + 1 - st.onset >= post.min_duration_frames[c] and st.gap_start is None:
                    st.confirmed = True
                    updates.append(self._update("onset", c, st, None))
        self._next += filtered.shape[0]
        return updates
