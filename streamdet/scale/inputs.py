"""What ``streamdet batch``'s INPUT arguments stand for: files, folders (searched recursively for audio, as
``streamdet file`` searches them), glob patterns, and list files naming one input per line.

- A folder is expanded by :func:`streamdet.cli.file_cmd.collect_inputs` (the one rule for folders); its problems
  (a broken link, a folder without audio) become inputs that carry their problem, so they get an error row.
- A pattern (``*``, ``?`` or ``[`` in an argument that is not an existing path) is expanded with :mod:`glob`,
  ``**`` recursive; a pattern that matches nothing is an error row.
- A list file (``.txt``, ``.lst`` or ``.list``) names one input per line (path, folder, pattern or URI; blank
  lines and ``#`` comments skipped); relative paths are relative to the list file's folder.
- A URI (``scheme://...``: ``s3://``, ``gs://``, ``hdfs://``, ``file://``, any filesystem pyarrow opens) is a file
  or a folder searched recursively; it needs pyarrow (the ``ray`` extra).

Every input carries its size and modification time, which ``--resume`` compares.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ..audio_io import AUDIO_EXTENSIONS
from ..errors import short_error
from .runtime import InputFile, is_uri, uri_filesystem

LIST_SUFFIXES = frozenset((".txt", ".lst", ".list"))
PATTERN_CHARS = ("*", "?", "[")


def expand_inputs(arguments: list[str]) -> list[InputFile]:
    """Every input the arguments name, in order, each once (the first time it is named)."""
    found: list[InputFile] = []
    for argument in arguments:
        found.extend(_expand(argument, Path.cwd(), in_list=False))
    unique: dict[str, InputFile] = {}
    for item in found:
        unique.setdefault(item.path, item)
    return list(unique.values())


def _expand(argument: str, base: Path, in_list: bool) -> list[InputFile]:
    if is_uri(argument):
        return _uri_inputs(argument)
    path = Path(argument) if os.path.isabs(argument) else base / argument
    shown = argument if base == Path.cwd() else os.path.normpath(path)  # a list's entry: relative to the list
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES and not in_list:
        return _list_inputs(path, shown)
    if not path.exists() and not path.is_symlink() and any(c in argument for c in PATTERN_CHARS):
        matches = sorted(glob.glob(shown, recursive=True))
        if not matches:
            return [InputFile(shown, problem="the pattern matches no file")]
        return [item for match in matches for item in _local_inputs(match)]
    return _local_inputs(shown)


def _list_inputs(path: Path, shown: str) -> list[InputFile]:
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        return [InputFile(shown, problem=f"cannot read the list: {exc.strerror or exc}")]
    items: list[InputFile] = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            items.extend(_expand(entry, path.parent, in_list=True))
    if not items:
        return [InputFile(shown, problem="the list names no input")]
    return items


def _local_inputs(argument: str) -> list[InputFile]:
    from ..cli.file_cmd import collect_inputs

    files, problems = collect_inputs([Path(argument)])
    items = [InputFile(name, problem=reason) for name, reason in problems]
    for file in files:
        try:
            st = file.stat()
        except OSError as exc:
            items.append(InputFile(str(file), problem=exc.strerror or short_error(exc)))
            continue
        items.append(InputFile(str(file), size=st.st_size, mtime=st.st_mtime))
    return items


def _uri_inputs(uri: str) -> list[InputFile]:
    try:
        filesystem, path = uri_filesystem(uri)
        from pyarrow import fs

        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.NotFound:
            return [InputFile(uri, problem="no such file or directory")]
        if info.type == fs.FileType.Directory:
            scheme = uri.split("://", 1)[0]
            entries = sorted((e for e in filesystem.get_file_info(fs.FileSelector(path, recursive=True))
                              if e.type == fs.FileType.File and Path(e.path).suffix.lower() in AUDIO_EXTENSIONS),
                             key=lambda e: e.path)
            if not entries:
                return [InputFile(uri, problem="folder holds no audio files")]
            return [InputFile(f"{scheme}://{e.path}", size=e.size, mtime=e.mtime.timestamp() if e.mtime else None)
                    for e in entries]
        return [InputFile(uri, size=info.size, mtime=info.mtime.timestamp() if info.mtime else None)]
    except ImportError:
        raise
    except Exception as exc:  # a bad URI, no credentials, an unreachable service: an error row for this input
        return [InputFile(uri, problem=short_error(exc))]
