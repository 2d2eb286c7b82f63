"""Reading what a subprocess wrote to a pseudo-terminal (tests that need stdout or stderr to be a terminal)."""

from __future__ import annotations

import os


def read_all(fd: int, into: list[bytes]) -> None:
    """Read a pty's master side into ``into`` until the other side closes (run on a thread while the writer is
    alive, so a full pty buffer never blocks it)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # Linux reports a closed slave side as EIO
            return
        if not chunk:
            return
        into.append(chunk)
