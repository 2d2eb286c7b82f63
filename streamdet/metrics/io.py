"""Readers and writers for the evaluation layouts: DCASE TSV, durations TSV, CSV and ``streamdet file`` JSONL.

Events are :class:`streamdet.events.Event` records whose ``stream`` field holds the audio file name
(the DCASE ``filename`` column); ground-truth events get ``confidence`` 1.0. A set of events is an
:data:`EventTable`: a dict from file name to that file's events, in the order they appear in the input
(the order matters for nothing but sed_eval's substitution count, which this package does not report).
A file listed with empty onset/offset/label cells (DCASE writes such rows for clips without events)
is kept as a key with an empty list.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..events import Event
from ..formats import DelimitedWriter, JsonlWriter

EventTable = dict[str, list[Event]]
"""Events per audio file name, in input order."""

Durations = dict[str, float]
"""Duration in seconds per audio file name (the DCASE ``filename\\tduration`` layout)."""

_FILE_KEYS = ("filename", "file", "audio_id", "stream")
_LABEL_KEYS = ("event_label", "label")
_CONF_KEYS = ("confidence", "score")


class EvalInputError(ValueError):
    """An evaluation input file is missing, unreadable or malformed; the message names the file."""


def _pick(header: list[str], keys: tuple[str, ...], path: Path, what: str, required: bool = True) -> int | None:
    for key in keys:
        if key in header:
            return header.index(key)
    if required:
        raise EvalInputError(f"{path}: no {what} column (expected one of {', '.join(keys)}; header is {header})")
    return None


def _float(cell: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise EvalInputError(f"{path}:{line}: {column} {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise EvalInputError(f"{path}:{line}: {column} {cell!r} is not finite")
    return value


def _check_event(path: Path, line: int, onset: float, offset: float) -> None:
    if offset < onset:
        raise EvalInputError(f"{path}:{line}: offset {offset} is before onset {onset}")


def read_events(path: str | Path) -> EventTable:
    """Read events from a DCASE TSV, a CSV or a ``streamdet file --format jsonl`` file.

    The layout follows the extension: ``.jsonl``/``.json`` is JSON lines with keys
    ``file, label, onset, offset[, confidence]``; ``.csv`` is comma-separated and anything else
    tab-separated, both with a header naming ``filename`` (or ``file``), ``onset``, ``offset``,
    ``event_label`` (or ``label``) and optionally ``confidence`` (or ``score``). Missing confidence is 1.0.

    Raises:
        EvalInputError: the file is missing or malformed (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{path}: no such file")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(path)
    return _read_delimited(path, "," if path.suffix.lower() == ".csv" else "\t")


def _read_delimited(path: Path, delimiter: str) -> EventTable:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise EvalInputError(f"{path}: empty file (expected a header line)")
    header = [c.strip().lower() for c in rows[0]]
    i_file = _pick(header, _FILE_KEYS, path, "file name")
    i_on = _pick(header, ("onset", "event_onset"), path, "onset")
    i_off = _pick(header, ("offset", "event_offset"), path, "offset")
    i_lab = _pick(header, _LABEL_KEYS, path, "event label")
    i_conf = _pick(header, _CONF_KEYS, path, "confidence", required=False)
    table: EventTable = {}
    for line, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        name = cells[i_file]
        if not name:
            raise EvalInputError(f"{path}:{line}: empty file name")
        events = table.setdefault(name, [])
        if not (cells[i_on] or cells[i_off] or cells[i_lab]):
            continue  # a file without events
        if not (cells[i_on] and cells[i_off] and cells[i_lab]):
            raise EvalInputError(f"{path}:{line}: onset, offset and label must all be given or all be empty")
        onset = _float(cells[i_on], path, line, "onset")
        offset = _float(cells[i_off], path, line, "offset")
        _check_event(path, line, onset, offset)
        conf = 1.0 if i_conf is None or not cells[i_conf] else _float(cells[i_conf], path, line, "confidence")
        events.append(Event(cells[i_lab], onset, offset, conf, name))
    return table


def _read_jsonl(path: Path) -> EventTable:
    table: EventTable = {}
    with path.open(encoding="utf-8") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{path}:{line}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise EvalInputError(f"{path}:{line}: expected a JSON object")
            name = next((obj[k] for k in _FILE_KEYS if k in obj), None)
            label = next((obj[k] for k in _LABEL_KEYS if k in obj), None)
            if not isinstance(name, str) or not isinstance(label, str):
                raise EvalInputError(f"{path}:{line}: needs string 'file' and 'label' fields")
            values = []
            for key in ("onset", "offset"):
                value = obj.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise EvalInputError(f"{path}:{line}: {key} must be a finite number, got {value!r}")
                values.append(float(value))
            conf = next((obj[k] for k in _CONF_KEYS if k in obj), 1.0)
            if isinstance(conf, bool) or not isinstance(conf, (int, float)):
                raise EvalInputError(f"{path}:{line}: confidence must be a number, got {conf!r}")
            _check_event(path, line, values[0], values[1])
            table.setdefault(name, []).append(Event(label, values[0], values[1], float(conf), name))
    return table


def read_durations(path: str | Path) -> Durations:
    """Read a DCASE durations TSV (``filename\\tduration`` with a header). Later duplicates are ignored."""
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter="," if path.suffix.lower() == ".csv" else "\t") if any(r)]
    if not rows:
        raise EvalInputError(f"{path}: empty file (expected a header line)")
    header = [c.strip().lower() for c in rows[0]]
    i_file = _pick(header, _FILE_KEYS, path, "file name")
    i_dur = _pick(header, ("duration",), path, "duration")
    durations: Durations = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) <= max(i_file, i_dur):
            raise EvalInputError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        duration = _float(row[i_dur].strip(), path, line, "duration")
        if duration < 0:
            raise EvalInputError(f"{path}:{line}: negative duration {duration}")
        durations.setdefault(row[i_file].strip(), duration)
    return durations


def write_events_tsv(events: EventTable, path: str | Path, confidence: bool = False) -> None:
    """Write events in the DCASE layout ``filename onset offset event_label`` (header included), exact floats.

    Files without events are written as rows with empty onset, offset and label, which
    :func:`read_events` reads back as files without events. ``confidence=True`` adds a column.
    """
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = DelimitedWriter(fh, "\t", confidence, digits=None, confidence_digits=None)
        for name, file_events in events.items():
            writer.add(name, file_events)


def write_events_jsonl(events: EventTable, path: str | Path) -> None:
    """Write events as ``streamdet file --format jsonl`` does (``{"file","label","onset","offset","confidence"}``),
    exact floats."""
    with Path(path).open("w", encoding="utf-8") as fh:
        writer = JsonlWriter(fh, digits=None, confidence_digits=None)
        for name, file_events in events.items():
            writer.add(name, file_events)


def write_durations(durations: Mapping[str, float], path: str | Path) -> None:
    """Write a DCASE durations TSV (``filename\\tduration`` with a header)."""
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["filename", "duration"])
        for name, duration in durations.items():
            writer.writerow([name, repr(float(duration))])


def events_from_records(records: Iterable[tuple[str, float, float, str]]) -> EventTable:
    """Build an :data:`EventTable` from ``(filename, onset, offset, label)`` tuples (confidence 1.0)."""
    table: EventTable = {}
    for name, onset, offset, label in records:
        table.setdefault(name, []).append(Event(label, float(onset), float(offset), 1.0, name))
    return table


def labels_of(events: EventTable) -> list[str]:
    """The sorted set of labels used in ``events``."""
    return sorted({ev.label for file_events in events.values() for ev in file_events})


def rename_files(events: EventTable, known: Iterable[str]) -> EventTable:
    """Map prediction file keys onto known ground-truth names: exact match first, else the base name.

    ``streamdet file`` writes the path it was given (``audio/x.wav``) while DCASE ground truth uses
    bare names (``x.wav``); a key is renamed to its base name when that is known and it is not.
    """
    known = set(known)
    out: EventTable = {}
    for name, file_events in events.items():
        target = name
        if name not in known:
            base = name.replace("\\", "/").rsplit("/", 1)[-1]
            if base in known:
                target = base
        out.setdefault(target, []).extend(
            ev if ev.stream == target else Event(ev.label, ev.onset, ev.offset, ev.confidence, target)
            for ev in file_events
        )
    return out
