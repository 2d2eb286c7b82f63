"""A PulseAudio server of a test's (or benchmark's) own: its own runtime directory, socket and null sink, so
freezing it or loading it never touches the shared server of the ``live`` tests or another user's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SINK = "private"


class PrivatePulse:
    """A PulseAudio server of our own: ``env`` points clients (libpulse, ALSA's pulse plugin) at it only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        socket = root / "native"
        self.env = {**os.environ, "HOME": str(root), "XDG_RUNTIME_DIR": str(root), "PULSE_RUNTIME_PATH":
                    str(root / "pulse"), "PULSE_STATE_PATH": str(root / "state"), "PULSE_SERVER": f"unix:{socket}",
                    "PULSE_SOURCE": f"{SINK}.monitor", "PULSE_SINK": SINK}
        self.log = open(root / "pulseaudio.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disallow-exit",
             f"--load=module-null-sink sink_name={SINK}",
             f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket}"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "list", "short", "sinks"], env=self.env, capture_output=True, text=True,
                             timeout=10).stdout.find(SINK) < 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"private PulseAudio did not start: {(root / 'pulseaudio.log').read_text()}")
            time.sleep(0.2)

    @classmethod
    def start(cls) -> PrivatePulse:
        """A new server in a new directory under /tmp (short: a unix socket path is at most 107 bytes)."""
        if not shutil.which("pulseaudio") or not shutil.which("pactl"):
            raise RuntimeError("PulseAudio is not installed (apt-get install pulseaudio pulseaudio-utils)")
        return cls(Path(tempfile.mkdtemp(prefix="sdpa-", dir="/tmp")))

    def freeze(self) -> None:
        """Stop the server process (SIGSTOP): a frozen audio server."""
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        """Resume (if frozen) and end the server; remove its directory."""
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


