"""Protocols the ffmpeg inside PyAV lacks, carried by the system ``ffmpeg``.

PyAV's wheels bundle an ffmpeg built without some protocols (``srt://`` in av 18.1); Debian's ``ffmpeg``
has them. For such a location a :class:`Relay` starts ``ffmpeg`` as a *transport only*: it connects, keeps
the audio packets as they are (``-c:a copy``, no decoding) and writes them as Matroska to a pipe; the
reader opens that pipe with PyAV and decodes in-process as for any other source. The packets keep their
timestamps, so gaps inside a connection are still lost audio; when the connection drops, ``ffmpeg`` exits
(``-rw_timeout``), the pipe ends and the reader reconnects with back-off as usual.
"""

from __future__ import annotations

import collections
import functools
import shutil
import subprocess
import threading
from typing import IO

# Matroska carries any audio codec (PCM included, unlike MPEG-TS); small clusters keep the added latency low.
_MUX = ["-f", "matroska", "-cluster_time_limit", "100", "-flush_packets", "1"]


def scheme_of(url: str) -> str:
    """The protocol of ``url`` (``srt`` for ``srt://host:port``), lower case; empty for a path."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


@functools.lru_cache(maxsize=1)
def system_ffmpeg_protocols() -> frozenset[str]:
    """The input protocols of the ``ffmpeg`` on PATH (empty when there is none or it cannot be run)."""
    binary = shutil.which("ffmpeg")
    if binary is None:
        return frozenset()
    try:
        text = subprocess.run([binary, "-hide_banner", "-protocols"], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    inputs = text.split("Input:", 1)[-1].split("Output:", 1)[0]
    return frozenset(line.strip().lower() for line in inputs.splitlines() if line.strip())


def can_relay(url: str) -> bool:
    """True when the system ``ffmpeg`` can read the protocol of ``url``."""
    scheme = scheme_of(url)
    return bool(scheme) and scheme in system_ffmpeg_protocols()


class Relay:
    """One ``ffmpeg`` process reading ``url`` and writing its first audio stream, packets unchanged, as
    Matroska to :attr:`output` (a binary pipe for ``av.open``). ``read_timeout`` (seconds): ffmpeg gives up
    when no data comes for that long, which ends the pipe. :meth:`terminate` may be called from any thread;
    :meth:`close` by the thread that reads the pipe."""

    def __init__(self, url: str, read_timeout: float) -> None:
        binary = shutil.which("ffmpeg")
        if binary is None:
            raise FileNotFoundError("no ffmpeg on PATH")
        args = [binary, "-nostdin", "-hide_banner", "-loglevel", "error",
                "-rw_timeout", str(int(read_timeout * 1e6)), "-i", url,
                "-map", "0:a:0", "-vn", "-c:a", "copy", *_MUX, "pipe:1"]
        self._errors: collections.deque[str] = collections.deque(maxlen=5)
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        self._drain = threading.Thread(target=self._read_errors, name="streamdet-relay-stderr", daemon=True)
        self._drain.start()

    @property
    def output(self) -> IO[bytes]:
        """The Matroska pipe."""
        assert self._process.stdout is not None
        return self._process.stdout

    def reason(self) -> str:
        """ffmpeg's last error line (why the relay ended), or an empty string."""
        self._drain.join(timeout=1.0)
        return self._errors[-1] if self._errors else ""

    def terminate(self) -> None:
        """Ask ffmpeg to stop (from any thread): the pipe then ends and a read on it returns."""
        if self._process.poll() is None:
            self._process.terminate()

    def close(self) -> None:
        """Stop ffmpeg and close the pipe (by the thread that reads it)."""
        self.terminate()
        try:
            self._process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _read_errors(self) -> None:
        assert self._process.stderr is not None
        for raw in self._process.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self._errors.append(line)
