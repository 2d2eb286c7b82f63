"""The output folder of ``streamdet batch``, the same whichever engine ran it::

    DIR/events/part-<id>.jsonl | .parquet | .tsv   the events: file, label, onset, offset, confidence
    DIR/files.jsonl                                one status row per input (merged at the end of a run)
    DIR/status/part-<id>.jsonl                     status rows of the parts written so far (while a run goes on)

Results are written in parts of a few files each, by :meth:`OutputFolder.write_part`: the in-process engine calls
it directly, on Ray it runs inside Ray Data's write tasks (:mod:`.ray_batch`). A part's events are written
first and its status rows last (each file to a temporary name, then renamed), so a status row on disk means its
events are too: an interrupted run leaves only whole parts, and ``--resume`` removes events of a part whose
status never landed. At the end :meth:`OutputFolder.finish` merges every status row into ``files.jsonl`` (in
input order; rows of earlier runs kept) and removes ``status/``.

Status rows: ``file``, ``status`` (``ok`` / ``error``), ``reason``, ``duration`` (s), ``events``,
``compute_seconds``, ``size``, ``mtime``, ``warnings``, ``part``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .runtime import FileResult, InputFile

FORMATS = ("jsonl", "parquet", "tsv")
EVENT_COLUMNS = ("file", "label", "onset", "offset", "confidence")


class OutputExistsError(RuntimeError):
    """The output folder holds results of an earlier run and ``--resume`` was not given (or another format)."""


def new_part_id() -> str:
    """A part name no other writer picks."""
    return uuid.uuid4().hex[:16]


class OutputFolder:
    """The output folder ``root`` with events in ``fmt`` (one of :data:`FORMATS`); picklable (Ray write tasks)."""

    def __init__(self, root: str | os.PathLike[str], fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.root = Path(root)
        self.fmt = fmt

    @property
    def events_dir(self) -> Path:
        """Where the event parts go."""
        return self.root / "events"

    @property
    def status_dir(self) -> Path:
        """Where the status parts go until :meth:`finish` merges them."""
        return self.root / "status"

    @property
    def files_path(self) -> Path:
        """``files.jsonl``: one status row per input."""
        return self.root / "files.jsonl"

    # --- before a run (driver) ----------------------------------------------------------------------------------
    def prepare(self, resume: bool) -> dict[str, dict[str, Any]]:
        """Make the folders; return the status rows already there by file (empty unless ``resume``). Without
        ``resume`` a folder holding results is refused (OutputExistsError), and so is another format's events."""
        if self.root.exists() and not self.root.is_dir():
            raise OutputExistsError(f"--output {self.root}: exists and is not a folder")
        formats = {p.suffix.lstrip(".") for p in self.events_dir.glob("part-*.*")} - {"tmp"}
        has_results = bool(formats) or self.files_path.exists() or any(self.status_dir.glob("part-*.jsonl"))
        if has_results and not resume:
            raise OutputExistsError(f"--output {self.root}: holds the results of an earlier run; give --resume to "
                                    "continue it, or another folder")
        if formats - {self.fmt}:
            raise OutputExistsError(f"--output {self.root}: the earlier run wrote {', '.join(sorted(formats))} "
                                    f"events; resume it with the same --format")
        self.events_dir.mkdir(parents=True, exist_ok=True)
        self.status_dir.mkdir(parents=True, exist_ok=True)
        rows = self.status_rows()
        known = {row.get("part") for row in rows}
        for part in self.events_dir.glob("part-*"):  # events of a part whose status never landed: redone now
            if part.name.split(".")[0].removeprefix("part-") not in known or part.suffix == ".tmp":
                part.unlink()
        return {row["file"]: row for row in rows}

    def forget(self, files: set[str]) -> None:
        """Remove every row of ``files`` (inputs a resumed run detects again): their events from the event parts,
        their status rows from ``files.jsonl`` and the status parts. Each rewritten file is replaced atomically."""
        if not files:
            return
        for part in sorted(self.events_dir.glob(f"part-*.{self.fmt}")):
            self._drop_events(part, files)
        for source in [self.files_path, *sorted(self.status_dir.glob("part-*.jsonl"))]:
            if source.exists():
                lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
                kept = [line for line in lines if line.strip() and json.loads(line)["file"] not in files]
                if len(kept) != len(lines):
                    _write_atomic(source, "".join(kept).encode())

    def _drop_events(self, part: Path, files: set[str]) -> None:
        if self.fmt == "parquet":
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            table = pq.read_table(part)
            keep = pc.invert(pc.is_in(table["file"], value_set=pa_strings([_utf8(f) for f in files])))
            if not pc.all(keep).as_py():
                sink = io.BytesIO()
                pq.write_table(table.filter(keep), sink)
                _write_atomic(part, sink.getvalue())
            return
        text = part.read_bytes().decode("utf-8", "surrogateescape")
        lines = text.splitlines(keepends=True)
        if self.fmt == "jsonl":
            kept = [line for line in lines if json.loads(line)["file"] not in files]
        else:  # tsv: the header, then rows whose first field is the file
            kept = lines[:1] + [line for line in lines[1:] if next(csv.reader([line], delimiter="\t"))[0] not in files]
        if len(kept) != len(lines):
            _write_atomic(part, "".join(kept).encode("utf-8", "surrogateescape"))

    def status_rows(self) -> list[dict[str, Any]]:
        """Every status row on disk: ``files.jsonl`` first, then the parts (a later row of a file wins)."""
        sources = [self.files_path, *sorted(self.status_dir.glob("part-*.jsonl"))]
        rows: list[dict[str, Any]] = []
        for source in sources:
            if source.exists():
                with source.open(encoding="utf-8") as f:
                    rows.extend(json.loads(line) for line in f if line.strip())
        return rows

    # --- during a run (any engine's writer) ------------------------------------------------------------------
    def write_part(self, results: Iterable[FileResult], part: str | None = None) -> str:
        """Write one part: its events, then its status rows; returns the part's id."""
        part = part or new_part_id()
        results = list(results)
        events = [row for r in results for row in r.events]
        if events or self.fmt == "tsv":
            data = self._encode_events(events, results)
            _write_atomic(self.events_dir / f"part-{part}.{self.fmt}", data)
        lines = "".join(json.dumps({**r.status, "part": part}) + "\n" for r in results)
        _write_atomic(self.status_dir / f"part-{part}.jsonl", lines.encode())
        return part

    def _encode_events(self, events: list[dict[str, Any]], results: list[FileResult]) -> bytes:
        if self.fmt == "jsonl":
            return "".join(json.dumps(row) + "\n" for row in events).encode()
        if self.fmt == "tsv":  # the DCASE layout of `streamdet file --format tsv`: a file without events is one row
            text = io.StringIO()
            writer = csv.writer(text, delimiter="\t", lineterminator="\n")
            writer.writerow(["filename", "onset", "offset", "event_label"])
            for r in results:
                rows = [e for e in r.events]
                if r.status["status"] == "ok" and not rows:
                    writer.writerow([r.status["file"], "", "", ""])
                for e in rows:
                    writer.writerow([e["file"], e["onset"], e["offset"], e["label"]])
            return text.getvalue().encode("utf-8", "surrogateescape")
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {c: [row[c] for row in events] for c in EVENT_COLUMNS}
        columns["file"] = [_utf8(name) for name in columns["file"]]
        table = pa.table({"file": pa.array(columns["file"], pa.string()), "label": pa.array(columns["label"],
                          pa.string()), "onset": pa.array(columns["onset"], pa.float64()),
                          "offset": pa.array(columns["offset"], pa.float64()),
                          "confidence": pa.array(columns["confidence"], pa.float64())})
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    # --- after a run (driver) ---------------------------------------------------------------------------------
    def finish(self, inputs: list[InputFile]) -> list[dict[str, Any]]:
        """Merge every status row into ``files.jsonl`` (this run's inputs in their order, then earlier rows of
        other inputs), remove the status parts; returns the rows of this run's inputs."""
        latest: dict[str, dict[str, Any]] = {}
        for row in self.status_rows():
            latest[row["file"]] = row
        ordered = [latest[i.path] for i in inputs if i.path in latest]
        named = {i.path for i in inputs}
        rest = [row for name, row in latest.items() if name not in named]
        data = "".join(json.dumps(row) + "\n" for row in [*ordered, *rest]).encode()
        _write_atomic(self.files_path, data)
        shutil.rmtree(self.status_dir, ignore_errors=True)
        return ordered


def read_events(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every event row of an output folder (any format), sorted by file, onset, offset and label."""
    rows: list[dict[str, Any]] = []
    for part in sorted(Path(root, "events").glob("part-*.*")):
        if part.suffix == ".jsonl":
            rows.extend(json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line)
        elif part.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows.extend(pq.read_table(part).to_pylist())
        elif part.suffix == ".tsv":
            with part.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
                for rec in csv.DictReader(f, delimiter="\t"):
                    if rec["event_label"]:
                        rows.append({"file": rec["filename"], "label": rec["event_label"],
                                     "onset": float(rec["onset"]), "offset": float(rec["offset"])})
    return sorted(rows, key=lambda r: (r["file"], r["onset"], r["offset"], r["label"]))


def pa_strings(values: list[str]) -> Any:
    """A pyarrow string array."""
    import pyarrow as pa

    return pa.array(values, pa.string())


def _utf8(name: str) -> str:
    """A file name as valid UTF-8 (the bytes of a non-UTF-8 name shown as ``\\xff``), for Arrow strings."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
