"""Readers and writers for the evaluation layouts: DCASE TSV, durations TSV, CSV and ``streamdet file`` JSONL.

Events are :class:`streamdet.events.Event` records whose ``stream`` field holds the audio file name
(the DCASE ``filename`` column); ground-truth events get ``confidence`` 1.0. A set of events is an
:data:`EventTable`: a dict from file name to that file's events, in the order they appear in the input
(the order matters for nothing but sed_eval's substitution count, which this package does not report).
A file listed with empty onset/offset/label cells (DCASE writes such rows for clips without events)
is kept as a key with an empty list.
"""

from __future__ import annotations

import codecs
import csv
import io
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
MAX_EVENT_SECONDS = 1e6
"""Latest time (and longest duration) the readers accept, about 11.6 days: a later one is a mistake, and the
segment-based metric would allocate memory in proportion to it."""


class EvalInputError(ValueError):
    """An evaluation input file is missing, unreadable or malformed; the message names the file."""


def _read_text(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark; anything else is an EvalInputError that says
    what the file seems to be (UTF-16, binary, another 8-bit encoding) and where."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise EvalInputError(f"{path}: UTF-16 text; save it as UTF-8")
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise EvalInputError(f"{path}:{line}: NUL byte: binary data (or UTF-16 text), not a UTF-8 text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EvalInputError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}; Latin-1 or another "
                             f"8-bit encoding?); save it as UTF-8") from None


def _rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    """The non-blank rows of a delimited file with their line numbers. Quotes work as in the csv module and
    pandas (``"a""b"``), but a quoted field may not span lines or run to the end of the file: a stray ``"``
    would otherwise swallow the lines after it silently."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter, strict=True)
    rows = []
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise EvalInputError(f"{path}:{first}: malformed quoting ({exc}); a stray '\"'?") from None
        if reader.line_num > first:
            raise EvalInputError(f"{path}:{first}: a quoted field runs over lines {first}-{reader.line_num}; "
                                 f"a stray '\"'?")
        if any(c.strip() for c in row):
            rows.append((first, row))
    return rows


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
        raise EvalInputError(f"{path}:{line}: {column} {_cut(cell)} is not a number") from None
    if not math.isfinite(value):
        raise EvalInputError(f"{path}:{line}: {column} {_cut(cell)} is not finite")
    return value


def _cut(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut short for a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _check_event(path: Path, line: int, onset: float, offset: float) -> None:
    if onset < 0:
        raise EvalInputError(f"{path}:{line}: negative onset {onset}")
    if offset < onset:
        raise EvalInputError(f"{path}:{line}: offset {offset} is before onset {onset}")
    if offset > MAX_EVENT_SECONDS:
        raise EvalInputError(f"{path}:{line}: offset {offset:g} s is beyond {MAX_EVENT_SECONDS:g} s (11.6 days)")


def read_events(path: str | Path) -> EventTable:
    """Read events from a DCASE TSV, a CSV or a ``streamdet file --format jsonl`` file.

    The layout follows the extension: ``.jsonl``/``.json`` is JSON lines with keys
    ``file, label, onset, offset[, confidence]``; ``.csv`` is comma-separated and anything else
    tab-separated, both with a header naming ``filename`` (or ``file``), ``onset``, ``offset``,
    ``event_label`` (or ``label``) and optionally ``confidence`` (or ``score``). Missing confidence is 1.0.
    The file must be UTF-8 (a byte-order mark is fine); times must be within 0 and :data:`MAX_EVENT_SECONDS`.

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
    rows = _rows(path, delimiter)
    if not rows:
        raise EvalInputError(f"{path}: empty file (expected a header line)")
    header = [c.strip().lower() for c in rows[0][1]]
    i_file = _pick(header, _FILE_KEYS, path, "file name")
    i_on = _pick(header, ("onset", "event_onset"), path, "onset")
    i_off = _pick(header, ("offset", "event_offset"), path, "offset")
    i_lab = _pick(header, _LABEL_KEYS, path, "event label")
    i_conf = _pick(header, _CONF_KEYS, path, "confidence", required=False)
    table: EventTable = {}
    for line, row in rows[1:]:
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
    for line, text in enumerate(io.StringIO(_read_text(path)), start=1):  # lines end at "\n" only, as in JSON
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"{path}:{line}: not JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # an integer past Python's digit limit; nesting too deep
            raise EvalInputError(f"{path}:{line}: not usable JSON ({type(exc).__name__})") from None
        if not isinstance(obj, dict):
            raise EvalInputError(f"{path}:{line}: expected a JSON object")
        name = next((obj[k] for k in _FILE_KEYS if k in obj), None)
        label = next((obj[k] for k in _LABEL_KEYS if k in obj), None)
        if not isinstance(name, str) or not isinstance(label, str) or not name or not label:
            raise EvalInputError(f"{path}:{line}: needs non-empty string 'file' and 'label' fields")
        onset, offset = (_json_number(obj.get(key), path, line, key) for key in ("onset", "offset"))
        conf = _json_number(next((obj[k] for k in _CONF_KEYS if k in obj), 1.0), path, line, "confidence")
        _check_event(path, line, onset, offset)
        table.setdefault(name, []).append(Event(label, onset, offset, conf, name))
    return table


def _json_number(value: object, path: Path, line: int, key: str) -> float:
    """A finite JSON number as a float (not a bool, a string or an integer too large for a float)."""
    number = math.nan
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1e300):
        number = float(value)
    if not math.isfinite(number):
        raise EvalInputError(f"{path}:{line}: {key} must be a finite number, got {_cut(value)}")
    return number


def read_durations(path: str | Path) -> Durations:
    """Read a DCASE durations TSV (``filename\\tduration`` with a header). Later duplicates are ignored."""
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{path}: no such file")
    rows = _rows(path, "," if path.suffix.lower() == ".csv" else "\t")
    if not rows:
        raise EvalInputError(f"{path}: empty file (expected a header line)")
    header = [c.strip().lower() for c in rows[0][1]]
    i_file = _pick(header, _FILE_KEYS, path, "file name")
    i_dur = _pick(header, ("duration",), path, "duration")
    durations: Durations = {}
    for line, row in rows[1:]:
        if len(row) <= max(i_file, i_dur):
            raise EvalInputError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        duration = _float(row[i_dur].strip(), path, line, "duration")
        if not 0 <= duration <= MAX_EVENT_SECONDS:
            raise EvalInputError(f"{path}:{line}: duration {duration:g} must be from 0 to {MAX_EVENT_SECONDS:g} s")
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
