"""Result formats of ``streamdet file`` (docs/DESIGN.md §4): the machine formats' writers come from
:mod:`streamdet.formats` (shared with :mod:`streamdet.metrics`); the ``table`` format, a readable rich table
printed when all files are done, lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from ..events import Event
from ..formats import DelimitedWriter, EventWriter, JsonlWriter
from .text import plain

FORMATS = ("table", "jsonl", "csv", "tsv")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".tsv": "tsv", ".csv": "csv",
                  ".txt": "table"}


class TableWriter(EventWriter):
    """A rich table of every file's events, printed by :meth:`finish` (colour only on a terminal)."""

    def __init__(self, out: IO[str], color: bool = False) -> None:
        super().__init__(out)
        self.files: list[tuple[str, Sequence[Event], float | None]] = []
        self.color = color

    def add(self, name: str, events: Sequence[Event], duration: float | None = None) -> None:
        """Collect the events of file ``name`` for the table."""
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
            for j, ev in enumerate(events):  # names and labels are text, never markup
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
