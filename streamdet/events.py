"""Detected events and the live updates a stream emits (docs/DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

UpdateType = Literal["onset", "offset"]


@dataclass(frozen=True)
class Event:
    """One sound event on a stream's clock, in seconds; ``offset`` is None while it is still open."""

    label: str
    onset: float
    offset: float | None
    confidence: float
    stream: str = "stream"

    @property
    def duration(self) -> float | None:
        """Length in seconds, or None while the event is open."""
        return None if self.offset is None else self.offset - self.onset

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON output."""
        return asdict(self)


@dataclass(frozen=True)
class Update:
    """An onset or offset of an event, as emitted by a stream while it runs.

    ``wall_time`` is the wall-clock time (seconds since the epoch) at which the event's onset
    happened, for live input; None for file input.
    """

    type: UpdateType
    label: str
    onset: float
    offset: float | None
    confidence: float
    stream: str
    wall_time: float | None = None

    @property
    def event(self) -> Event:
        """The event this update belongs to (open for onsets, closed for offsets)."""
        return Event(self.label, self.onset, self.offset, self.confidence, self.stream)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of docs/DESIGN.md §4: type, label, onset, offset, confidence, stream, wall_time."""
        return asdict(self)
