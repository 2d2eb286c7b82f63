"""Writing events: the JSONL, TSV (DCASE) and CSV layouts of docs/DESIGN.md §4, one writer per layout.

``streamdet file`` writes through these file by file as results arrive (times rounded to the microsecond, so
that 0.30000000000000004 prints as 0.3); :func:`streamdet.metrics.write_events_tsv` and
:func:`~streamdet.metrics.write_events_jsonl` write exact floats through the same writers (``digits=None``).

- ``jsonl``: one object per event ``{"file", "label", "onset", "offset", "confidence"}``; a file without
  events writes nothing;
- ``tsv``: ``filename onset offset event_label`` with a header; a file without events is a row with empty
  onset, offset and label (as DCASE writes clips without events);
- ``csv``: the same columns with ``,`` and, by default, a ``confidence`` column.

All of them are read back by :func:`streamdet.metrics.read_events`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO

from .events import Event

__all__ = ["DelimitedWriter", "EventWriter", "JsonlWriter"]

TIME_DIGITS = 6
CONFIDENCE_DIGITS = 4


def _round(x: float | None, digits: int | None) -> float | None:
    if x is None:
        return None
    return float(x) if digits is None else round(float(x), digits)


class EventWriter:
    """Base: :meth:`add` per finished file, :meth:`finish` once at the end."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def add(self, name: str, events: Sequence[Event], duration: float | None = None) -> None:
        """Write (or collect) the finished events of file ``name`` (of ``duration`` seconds, when known)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Write whatever is still held back and flush; called once at the end (also after Ctrl-C)."""
        self.out.flush()


class JsonlWriter(EventWriter):
    """One JSON object per event; times and confidences rounded (``None``: exact floats)."""

    def __init__(self, out: IO[str], digits: int | None = TIME_DIGITS,
                 confidence_digits: int | None = CONFIDENCE_DIGITS) -> None:
        super().__init__(out)
        self.digits = digits
        self.confidence_digits = confidence_digits

    def add(self, name: str, events: Sequence[Event], duration: float | None = None) -> None:
        """Write one line per event of file ``name``."""
        for ev in events:
            obj = {"file": name, "label": ev.label, "onset": _round(ev.onset, self.digits),
                   "offset": _round(ev.offset, self.digits),
                   "confidence": _round(ev.confidence, self.confidence_digits)}
            self.out.write(json.dumps(obj) + "\n")
        self.out.flush()


class DelimitedWriter(EventWriter):
    """CSV or TSV rows ``filename, onset, offset, event_label[, confidence]`` with a header."""

    def __init__(self, out: IO[str], delimiter: str, confidence: bool, digits: int | None = TIME_DIGITS,
                 confidence_digits: int | None = CONFIDENCE_DIGITS) -> None:
        super().__init__(out)
        self.confidence = confidence
        self.digits = digits
        self.confidence_digits = confidence_digits
        self.writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        self.writer.writerow(["filename", "onset", "offset", "event_label", *(["confidence"] * confidence)])

    def add(self, name: str, events: Sequence[Event], duration: float | None = None) -> None:
        """Write the rows of file ``name`` (one row with empty fields when it has no events)."""
        if not events:
            self.writer.writerow([name, "", "", "", *([""] * self.confidence)])
        for ev in events:
            row = [name, _round(ev.onset, self.digits), _round(ev.offset, self.digits), ev.label]
            self.writer.writerow(row + ([_round(ev.confidence, self.confidence_digits)] if self.confidence else []))
        self.out.flush()
