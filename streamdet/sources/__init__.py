"""Audio from cameras, network streams, recordings and pipes, decoded with PyAV (the ``stream`` extra).

- :class:`SourceGroup`: several named sources detected on one Detector (batched), with reconnects,
  lost-audio accounting and wall-clock alignment; iterate it for updates and statuses.
- :class:`SourceReader`: one source decoded in a thread (used by the group).
- :func:`parse_source` / :class:`SourceSpec`: ``[name=]location`` as ``streamdet listen --url`` takes it.
- :func:`decode_audio`, :class:`DecodedRun`: one location read and detected as fast as it can be read
  (``streamdet file -``).

Importing this package does not import PyAV; opening a source does, and without it raises
:class:`~streamdet.extras.ExtraMissingError` naming ``pip install "streamdet[stream]"``.
"""

from __future__ import annotations

from .decode import DecodedRun, decode_audio
from .group import SourceGroup
from .reader import ReaderSettings, SourceReader, SourceStatus, import_av
from .urls import SourceSpec, parse_source, parse_sources

__all__ = [
    "DecodedRun",
    "ReaderSettings",
    "SourceGroup",
    "SourceReader",
    "SourceSpec",
    "SourceStatus",
    "decode_audio",
    "import_av",
    "parse_source",
    "parse_sources",
]
