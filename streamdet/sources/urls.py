"""What ``--url`` names: a stream name and a location that PyAV (ffmpeg) can open.

``cam1=rtsp://host/stream`` names the stream ``cam1``; without a name the stream is named after the
location (``rtsp://10.0.0.5/live`` → ``10.0.0.5``, ``/rec/yard.wav`` → ``yard``, ``-`` → ``stdin``).
``-`` is standard input; a path to an existing file (or a ``file:`` URL) is a local recording, played
at real-time pace so that it can stand in for a camera.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

STDIN = "-"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class SourceSpec:
    """A named audio location: ``name`` becomes the stream's name (in updates, MQTT topics)."""

    name: str
    url: str

    @property
    def is_stdin(self) -> bool:
        """True for ``-`` (standard input)."""
        return self.url == STDIN

    @property
    def is_local_file(self) -> bool:
        """True for a path or ``file:`` URL of a local recording (played at real-time pace)."""
        if self.url.startswith("file:"):
            return True
        return not _SCHEME.match(self.url) and not self.is_stdin

    @property
    def av_url(self) -> str:
        """The location as PyAV opens it (standard input is ffmpeg's ``pipe:0``)."""
        if self.is_stdin:
            return "pipe:0"
        if self.url.startswith("file://"):
            return self.url[len("file://"):]
        if self.url.startswith("file:"):
            return self.url[len("file:"):]
        return self.url


def default_name(url: str) -> str:
    """A stream name derived from ``url``: the host of a network URL, the stem of a file, ``stdin`` for ``-``."""
    if url == STDIN:
        return "stdin"
    if _SCHEME.match(url) and not url.startswith("file:"):
        parts = urlsplit(url)
        host = parts.hostname or parts.scheme
        return f"{host}_{parts.port}" if parts.port else host
    stem = Path(url.removeprefix("file://").removeprefix("file:")).stem
    return stem or "file"


def parse_source(text: str) -> SourceSpec:
    """``[name=]location`` → :class:`SourceSpec`. A ``name`` is letters, digits, ``_``, ``.`` or ``-``;
    an ``=`` inside a URL (a query string) is not mistaken for one. Raises ValueError when empty."""
    text = text.strip()
    name, sep, rest = text.partition("=")
    if sep and _NAME.match(name) and rest:
        spec = SourceSpec(name, rest)
    elif text:
        spec = SourceSpec(default_name(text), text)
    else:
        raise ValueError("an empty --url")
    return spec


def parse_sources(texts: list[str]) -> list[SourceSpec]:
    """Parse every ``--url``; raises ValueError when two streams would share a name."""
    specs = [parse_source(t) for t in texts]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"two sources are named {spec.name!r}: name them, e.g. --url cam1=URL --url cam2=URL")
        seen.add(spec.name)
    if sum(spec.is_stdin for spec in specs) > 1:
        raise ValueError("standard input (-) can be read by one source only")
    return specs
