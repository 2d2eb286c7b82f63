"""The per-file logic of ``streamdet batch``, the same for every engine: one input in, its events and one status
row out.

The in-process engine (:mod:`.local`) and every Ray actor (:mod:`.ray_batch`) call :func:`detect_one` with a
:class:`~streamdet.Detector` built once per worker from a :class:`DetectorSpec`; a file is decoded and run
block by block through :meth:`Detector.open_file` exactly as ``streamdet file`` does, so long files are never
loaded whole and the events are those of ``streamdet file``. Nothing here raises for a bad input: a missing,
corrupt or unreadable file becomes an ``error`` row naming the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import short_error
from ..formats import CONFIDENCE_DIGITS, TIME_DIGITS

if TYPE_CHECKING:
    from ..detector import Detector

COPY_CHUNK = 1 << 20  # bytes per read when a URI is copied to a local temporary file


@dataclass(frozen=True)
class InputFile:
    """One input: a local path or a URI, its size and modification time when known (the identity ``--resume``
    compares), or the problem found while listing it (a missing path, an empty folder)."""

    path: str
    size: int | None = None
    mtime: float | None = None
    problem: str | None = None

    def key(self) -> tuple[str, int | None, float | None]:
        """What makes two runs' inputs the same file: path, size and modification time."""
        return (self.path, self.size, self.mtime)

    def to_dict(self) -> dict[str, Any]:
        """The input as a JSON object (how it travels to the Ray workers)."""
        return asdict(self)


@dataclass
class FileResult:
    """What one input gave: its status row (``files.jsonl``) and its event rows."""

    status: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class DetectorSpec:
    """Everything a worker needs to build its Detector: the model file's bytes (so workers on other machines need
    no copy of it), its name, the compute device and the Detector keyword arguments of the detection options."""

    model_name: str
    model_bytes: bytes
    device: str
    settings: dict[str, Any]

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], device: str, settings: dict[str, Any]) -> DetectorSpec:
        """The spec of the model file at ``path`` with these settings."""
        return cls(Path(path).name, Path(path).read_bytes(), device, dict(settings))

    def build(self, threads: int | None = None) -> tuple[Detector, str]:
        """A Detector on a private copy of the model (``threads`` CPU threads); returns it and the copy's folder
        (the caller removes it when done)."""
        from ..detector import Detector

        folder = tempfile.mkdtemp(prefix="streamdet-model-")
        path = Path(folder) / self.model_name
        path.write_bytes(self.model_bytes)
        settings = dict(self.settings)
        if threads is not None:
            settings["threads"] = threads
        return Detector(path, device=self.device, **settings), folder


def event_rows(name: str, events: list[Any]) -> list[dict[str, Any]]:
    """The event rows of one file, sorted as ``streamdet file`` writes them, rounded as its JSONL is."""
    ordered = sorted(events, key=lambda e: (e.onset, e.offset, e.label))
    return [{"file": name, "label": e.label, "onset": round(float(e.onset), TIME_DIGITS),
             "offset": round(float(e.offset), TIME_DIGITS), "confidence": round(float(e.confidence), CONFIDENCE_DIGITS)}
            for e in ordered]


def detect_one(det: Detector, item: InputFile) -> FileResult:
    """Detect the events of ``item`` with ``det``; never raises for a bad input (it is an ``error`` row)."""
    t0 = time.perf_counter()
    status: dict[str, Any] = {"file": item.path, "status": "ok", "reason": None, "duration": None, "events": 0,
                              "compute_seconds": 0.0, "size": item.size, "mtime": item.mtime, "warnings": []}
    if item.problem is not None:
        status.update(status="error", reason=item.problem)
        return FileResult(status)
    local, cleanup = item.path, None
    try:
        if is_uri(item.path):
            local, cleanup = fetch_uri(item.path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = det.open_file(local, name=item.path)
            run.run()
        status["duration"] = round(run.duration, 6)
        rows = event_rows(item.path, run.events)
        status["events"] = len(rows)
        status["warnings"] = [short_error(w.message) for w in caught]  # type: ignore[arg-type]
        result = FileResult(status, rows)
    except Exception as exc:  # one bad input must never fail the job: its row says why
        from ..audio_io import AudioFileError

        reason = exc.reason if isinstance(exc, AudioFileError) else short_error(exc, with_type=not isinstance(
            exc, (OSError, ValueError)))
        status.update(status="error", reason=reason)
        result = FileResult(status)
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    status["compute_seconds"] = round(time.perf_counter() - t0, 4)
    return result


def is_uri(path: str) -> bool:
    """Whether ``path`` is a URI (``scheme://...``) rather than a local path."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.isidentifier() and len(scheme) > 1


def uri_filesystem(uri: str) -> tuple[Any, str]:
    """The pyarrow filesystem of ``uri`` and the path in it (``file://``, ``s3://``, ``gs://``, ``hdfs://``, ...);
    pyarrow comes with the ``ray`` extra."""
    from ..extras import import_extra

    fs = import_extra("pyarrow.fs", "ray", f"reading {uri}")
    return fs.FileSystem.from_uri(uri)


def fetch_uri(uri: str) -> tuple[str, str]:
    """Copy ``uri`` to a local temporary file in bounded chunks (it is then decoded block by block like a local
    file); returns the local path and the folder to remove."""
    filesystem, path = uri_filesystem(uri)
    folder = tempfile.mkdtemp(prefix="streamdet-input-")
    local = os.path.join(folder, os.path.basename(path) or "input")
    try:
        with filesystem.open_input_stream(path) as src, open(local, "wb") as dst:
            while chunk := src.read(COPY_CHUNK):
                dst.write(chunk)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return local, folder
