"""Result formats of ``streamdet file`` (DESIGN.md §4), written file by file as results arrive.

- ``jsonl``: one object per event ``{"file", "label", "onset", "offset", "confidence"}``;
- ``tsv``: the DCASE layout ``filename onset offset event_label`` with a header; a file without events
  is a row with empty onset/offset/label (as :func:`streamdet.metrics.write_events_tsv` writes it);
- ``csv``: ``filename,onset,offset,event_label,confidence`` with a header (same empty-row rule);
- ``table``: a readable table (rich), printed when all files are done.

All three machine formats are read back by ``streamdet eval`` (:func:`streamdet.metrics.read_events`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO

from ..events import Event
from .text import plain

FORMATS = ("table", "jsonl", "csv", "tsv")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".tsv": "tsv", ".csv": "csv",
                  ".txt": "table"}


def _t(x: float) -> float:
    """Times on the frame grid, without float noise (0.30000000000000004 -> 0.3)."""
    return round(float(x), 6)


def _c(x: float) -> float:
    return round(float(x), 4)


class EventWriter:
    """Base: ``add(file, events)`` per finished file, ``finish()`` at the end."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def add(self, name: str, events: Sequence[Event], duration: float) -> None:
        """Write (or collect) the finished events of one file of ``duration`` seconds."""
        raise NotImplementedError

    def finish(self) -> None:
        """Write whatever is still held back and flush; called once at the end (also after Ctrl-C)."""
        self.out.flush()


class JsonlWriter(EventWriter):
    """One JSON object per event; a file without events writes nothing."""

    def add(self, name: str, events: Sequence[Event], duration: float) -> None:
        for ev in events:
            obj = {"file": name, "label": ev.label, "onset": _t(ev.onset), "offset": _t(ev.offset),
                   "confidence": _c(ev.confidence)}
            self.out.write(json.dumps(obj) + "\n")
        self.out.flush()


class DelimitedWriter(EventWriter):
    """CSV or TSV rows with a header; a file without events is one row with empty fields."""

    def __init__(self, out: IO[str], delimiter: str, confidence: bool) -> None:
        super().__init__(out)
        self.confidence = confidence
        self.writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        self.writer.writerow(["filename", "onset", "offset", "event_label", *(["confidence"] * confidence)])

    def add(self, name: str, events: Sequence[Event], duration: float) -> None:
        if not events:
            self.writer.writerow([name, "", "", "", *([""] * self.confidence)])
        for ev in events:
            row = [name, _t(ev.onset), _t(ev.offset), ev.label]
            self.writer.writerow(row + ([_c(ev.confidence)] if self.confidence else []))
        self.out.flush()


class TableWriter(EventWriter):
    """A rich table of every file's events, printed by :meth:`finish` (colour only on a terminal)."""

    def __init__(self, out: IO[str], color: bool = False) -> None:
        super().__init__(out)
        self.files: list[tuple[str, Sequence[Event], float]] = []
        self.color = color

    def add(self, name: str, events: Sequence[Event], duration: float) -> None:
        self.files.append((name, events, duration))

    def finish(self) -> None:
        from rich.console import Console
        from rich.table import Table

        if not self.files:
            return
        if self.color:
            console = Console(file=self.out)
        else:  # a file or a pipe: plain text, wide enough not to wrap
            console = Console(file=self.out, width=160, no_color=True, force_terminal=False)
        table = Table()
        for column, justify in (("file", "left"), ("label", "left"), ("onset", "right"), ("offset", "right"),
                                ("duration", "right"), ("confidence", "right")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for i, (name, events, _) in enumerate(self.files):
            if i:
                table.add_section()
            if not events:
                table.add_row(plain(name), plain("(no events)", "dim"), "", "", "", "")
            for j, ev in enumerate(events):
                table.add_row(plain(name if j == 0 else ""), plain(ev.label), f"{ev.onset:.2f}", f"{ev.offset:.2f}",
                              f"{ev.offset - ev.onset:.2f}", f"{ev.confidence:.2f}")
        console.print(table)
        self.out.flush()


def make_writer(fmt: str, out: IO[str], color: bool = False) -> EventWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`) on ``out``; ``color`` only matters for ``table``."""
    if fmt == "jsonl":
        return JsonlWriter(out)
    if fmt == "tsv":
        return DelimitedWriter(out, "\t", confidence=False)
    if fmt == "csv":
        return DelimitedWriter(out, ",", confidence=True)
    if fmt == "table":
        return TableWriter(out, color)
    raise ValueError(f"unknown format {fmt!r}")
