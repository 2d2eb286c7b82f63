"""Real servers on 127.0.0.1 for the stream and MQTT tests (issue 20): ffmpeg serving audio over HTTP,
an RTSP server (Debian's rtsp-server-perl) fed by ffmpeg, a Mosquitto broker, and an MQTT subscriber.

Each starts a real process on a free loopback port and is stopped by the test (``stop``)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FFMPEG = shutil.which("ffmpeg")
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
RTSP_SERVER = shutil.which("rtsp-server-perl")
ICECAST = shutil.which("icecast2") or ("/usr/bin/icecast2" if Path("/usr/bin/icecast2").exists() else None)


def require(binary: str | None, package: str) -> str:
    """The path of a needed program; fail (CI installs it) naming the Debian package when it is missing."""
    if binary is None:
        pytest.fail(f"{package} is not installed: apt-get install {package} (.ci/run installs it)")
    return binary


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def ffmpeg(*args: str) -> list[str]:
    """An ffmpeg command line (quiet)."""
    return [require(FFMPEG, "ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", *args]


def convert(src: Path, dst: Path, *args: str) -> Path:
    """Transcode ``src`` to ``dst`` with ffmpeg (extra ``args`` before the output)."""
    subprocess.run(ffmpeg("-y", "-i", str(src), *args, str(dst)), check=True, timeout=60)
    return dst


def serve_http(audio: Path, port: int, fmt: str = "mp3", *extra: str) -> subprocess.Popen:
    """``ffmpeg -re -i AUDIO -listen 1 -f FMT http://127.0.0.1:PORT/``: one client, real-time pace."""
    return subprocess.Popen(ffmpeg("-re", "-i", str(audio), *extra, "-listen", "1", "-f", fmt,
                                   f"http://127.0.0.1:{port}/"))


def stop(proc: subprocess.Popen | None) -> None:
    """Terminate a server process (kill it if it does not go)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class RtspServer:
    """rtsp-server-perl on loopback: ffmpeg publishes to ``source_port`` (ANNOUNCE/RECORD), clients play
    from ``client_port`` as from a camera."""

    def __init__(self) -> None:
        self.client_port = free_port()
        self.source_port = free_port()
        self.proc = subprocess.Popen(
            [require(RTSP_SERVER, "rtsp-server-perl"), "--clientport", str(self.client_port), "--serverport",
             str(self.source_port), "--client_listen_address", "127.0.0.1", "--source_listen_address",
             "127.0.0.1", "--loglevel", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.client_port)
        wait_for_port(self.source_port)

    def publish(self, audio: Path, mount: str = "cam") -> subprocess.Popen:
        """Publish ``audio`` (AAC, real-time pace) on ``mount``."""
        return subprocess.Popen(ffmpeg("-re", "-i", str(audio), "-c:a", "aac", "-f", "rtsp",
                                       f"rtsp://127.0.0.1:{self.source_port}/{mount}"))

    def url(self, mount: str = "cam") -> str:
        """The URL a camera client plays."""
        return f"rtsp://127.0.0.1:{self.client_port}/{mount}"

    def stop(self) -> None:
        """Stop the server."""
        stop(self.proc)


class Icecast:
    """Debian's Icecast 2 on loopback with a throwaway configuration: ffmpeg is the source client
    (``icecast://``), listeners play ``http://127.0.0.1:PORT/MOUNT`` as from an internet radio. Its folder is
    its own (pytest's are private to the user, and Icecast run by root drops to ``nobody``)."""

    PASSWORD = "hackme-test"
    CODEC = ("-c:a", "libvorbis", "-q:a", "6")

    def __init__(self) -> None:
        binary = require(ICECAST, "icecast2")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="streamdet-icecast-"))
        self.folder.chmod(0o755)
        logs = self.folder / "logs"
        logs.mkdir()
        logs.chmod(0o777)
        # Icecast refuses to run as root unless it changes owner: then it drops to nobody.
        owner = ("<security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group></changeowner>"
                 "</security>") if os.geteuid() == 0 else "<security><chroot>0</chroot></security>"
        config = self.folder / "icecast.xml"
        config.write_text(f"""<icecast>
  <limits><sources>2</sources><burst-size>0</burst-size></limits>
  <authentication><source-password>{self.PASSWORD}</source-password>
    <admin-user>admin</admin-user><admin-password>{self.PASSWORD}</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{self.port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{logs}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><errorlog>error.log</errorlog><loglevel>2</loglevel></logging>
  {owner}
</icecast>
""")
        config.chmod(0o644)
        self.proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def source(self, audio: Path, mount: str = "live.ogg") -> subprocess.Popen:
        """ffmpeg sending ``audio`` as Ogg Vorbis to ``mount``, at real-time pace."""
        return subprocess.Popen(ffmpeg("-re", "-i", str(audio), *self.CODEC, "-content_type", "application/ogg",
                                       "-f", "ogg",
                                       f"icecast://source:{self.PASSWORD}@127.0.0.1:{self.port}/{mount}"))

    def url(self, mount: str = "live.ogg") -> str:
        """The URL a listener plays."""
        return f"http://127.0.0.1:{self.port}/{mount}"

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        stop(self.proc)
        shutil.rmtree(self.folder, ignore_errors=True)


class Mosquitto:
    """A Mosquitto broker on a free loopback port, with persistence (so a restart keeps the subscriber's
    session and its queued QoS 1 messages, as a production broker does)."""

    def __init__(self, workdir: Path, port: int | None = None, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: (certificate, key) files for a TLS listener (``mqtts://``)."""
        self.port = port or free_port()
        self.workdir = workdir
        self.tls = tls is not None
        self.config = workdir / "mosquitto.conf"
        # `user`: as root, Mosquitto would switch to its own user, which cannot read the test's files.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "persistence true", f"persistence_location {workdir}/"]
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        """The broker's ``mqtt://`` (or ``mqtts://localhost``) URL."""
        return f"mqtts://localhost:{self.port}" if self.tls else f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) the broker on the same port."""
        self.proc = subprocess.Popen([require(MOSQUITTO, "mosquitto"), "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the broker (it saves its persistence file)."""
        stop(self.proc)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` (and 127.0.0.1) made with openssl: (certificate, key)."""
    cert, key = folder / "broker.crt", folder / "broker.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass
class Received:
    """One message a subscriber got."""

    topic: str
    payload: str
    retain: bool

    def json(self) -> dict:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A real paho-mqtt subscriber to ``topic`` (QoS 1, persistent session) recording every message in order."""

    url: str
    topic: str = "#"
    name: str = "sub"
    cafile: Path | None = None
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt

        from streamdet.integrations.mqtt import BrokerAddress

        address = BrokerAddress.parse(self.url)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{self.name}-{address.port}",
                                  clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        if self.cafile is not None:
            self.client.tls_set(ca_certs=str(self.cafile))
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the subscriber could not subscribe"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not flags.session_present:  # a resumed session keeps its subscription (a new one would replay retained)
            client.subscribe(self.topic, qos=1)
        else:
            self._subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, message.payload.decode(), bool(message.retain)))

    def received(self) -> list[Received]:
        """A copy of the messages so far."""
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate, timeout: float = 15.0) -> list[Received]:
        """Wait until ``predicate(messages)`` holds; return the messages (fail on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if predicate(got):
                return got
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for MQTT messages; got {len(self.received())}: "
                    f"{[(m.topic, m.payload[:60]) for m in self.received()][-10:]}")

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
