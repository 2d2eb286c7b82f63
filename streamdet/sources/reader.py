"""Decoding one audio source with PyAV in its own thread: connect, decode, reconnect with back-off.

A :class:`SourceReader` opens its location with PyAV (ffmpeg's libraries, the ``stream`` extra),
decodes the first audio stream to float32 mono at the rate of its first connection, and hands the
samples to a :class:`Feed` (in practice a :class:`~streamdet.sources.group.SourceGroup`, which pushes
them into a :class:`~streamdet.Stream`).

Clock and lost audio (the contract of PortAudio overflows, DESIGN.md §3):

- The stream's sample 0 is anchored to wall-clock time: ``origin`` is the smallest
  ``arrival time − position`` seen, i.e. the earliest start consistent with every chunk's arrival
  (a burst of buffered audio after connecting does not move it later; the decoder's tail at the end
  of a connection does not count).
- When a connection drops, the source is reopened with exponential back-off (0.5 s doubling up to
  ``backoff_max``). On reconnection the audio that should have arrived since the origin but did not
  (``(connect time − origin) · rate − samples so far``) is reported as lost: the stream reads it as
  silence (``Stream.push_lost``), so the clock stays aligned with wall time and later events carry
  true times.
- Inside a connection, a jump in the decoded frames' timestamps of more than
  :data:`GAP_TOLERANCE` seconds (packets lost on the network) is lost audio too.
- A local file is played at real-time pace (it stands in for a camera); standard input and network
  streams are paced by whoever produces them. ``ReaderSettings.pace`` plays a file that many times faster
  (soak tests, replaying recordings); its wall-clock times are then the stream clock from the start
  (``origin`` + position), and a pace faster than the detector follows queues the decoded audio in memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np

from ..extras import import_extra
from .relay import Relay, can_relay, scheme_of
from .urls import SourceSpec

GAP_TOLERANCE = 0.1  # seconds: a larger jump in the decoded timestamps is lost audio
# Small probes: a live stream starts within a fraction of a second instead of after ffmpeg's default 5 s probe.
OPEN_OPTIONS = {"probesize": "16384", "analyzeduration": "300000"}

_wall_clock = time.time

StatusType = Literal["connected", "disconnected", "ended"]


def import_av() -> Any:
    """Import PyAV, or raise :class:`~streamdet.extras.ExtraMissingError` naming ``pip install "streamdet[stream]"``."""
    return import_extra("av", "stream", "reading cameras, network streams and piped audio (PyAV)")


@dataclass(frozen=True)
class ReaderSettings:
    """How a :class:`SourceReader` connects.

    reconnect: reopen a network source that drops or cannot be reached (files and pipes just end).
    realtime: pace decoding to real time; None: for local files only.
    pace: with ``realtime``, play this many times faster than real time (1: real time).
    backoff_max: longest wait between two connection attempts, seconds.
    open_timeout, read_timeout: seconds before a network open or read gives up (network sources only).
    """

    reconnect: bool = True
    realtime: bool | None = None
    pace: float = 1.0
    backoff_max: float = 30.0
    open_timeout: float = 10.0
    read_timeout: float = 5.0


@dataclass(frozen=True)
class SourceStatus:
    """A change of a source's connection, for the live view, JSON lines and logs.

    ``type`` is ``connected`` (first connection or a reconnection: ``lost`` is the audio, in seconds,
    that the outage cost and that the stream reads as silence; ``wall_time`` is when the successful
    attempt began, where its audio starts), ``disconnected`` (``reason`` says why;
    the source retries with back-off) or ``ended`` (the file or pipe ended, or the source stopped).
    """

    type: StatusType
    stream: str
    wall_time: float
    reconnects: int = 0
    lost: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict: type, stream, wall_time, reconnects, lost, reason."""
        return asdict(self)


class Feed(Protocol):
    """Where a reader delivers what it decodes (called from the reader's thread, in order)."""

    def format(self, name: str, sample_rate: int) -> None:
        """The stream's sample rate, once, before its first audio."""

    def audio(self, name: str, samples: np.ndarray) -> None:
        """Decoded float32 mono samples at that rate."""

    def lost(self, name: str, frames: int) -> None:
        """``frames`` samples that never arrived (read as silence)."""

    def origin(self, name: str, wall: float) -> None:
        """The wall-clock time (epoch seconds) of the stream's sample 0 (sent again when it improves)."""

    def status(self, status: SourceStatus) -> None:
        """A connection change."""

    def end(self, name: str) -> None:
        """The reader stopped; nothing follows."""


class Backoff:
    """Exponential back-off delays: ``initial``, doubling, at most ``maximum`` seconds; :meth:`reset` after success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt (doubles each call)."""
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` (after a connection that delivered audio)."""
        self._next = self.initial


class UnsupportedSourceError(Exception):
    """A location this build of ffmpeg cannot read at all (retrying would not help): the source ends."""


def unsupported_protocol(url: str) -> str:
    """Why ``url`` cannot be read: neither PyAV's ffmpeg (its wheels lack ``srt``) nor a system ``ffmpeg`` has the
    protocol; and the way round."""
    scheme = scheme_of(url) or url.split(":", 1)[0]
    return (f"the ffmpeg inside PyAV cannot read {scheme}:// (no {scheme!r} protocol in this build) and there is no "
            f"ffmpeg on PATH that can (install one with {scheme}, e.g. Debian's `apt-get install ffmpeg`: streamdet "
            f"then relays the stream through it), or relay it yourself, e.g. `ffmpeg -i '{url}' -c copy -f mpegts "
            "udp://127.0.0.1:5004`, and listen to udp://127.0.0.1:5004 (docs/home-assistant.md)")


def short_reason(exc: BaseException) -> str:
    """A one-line reason for a failed open or read."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    return text or type(exc).__name__


class SourceReader:
    """One source decoded in a daemon thread; see the module docstring for the clock rules.

    ``spec`` names the location, ``feed`` receives formats, samples, lost frames, the origin, statuses and
    the end; ``settings`` say how to connect.
    """

    def __init__(self, spec: SourceSpec, feed: Feed, settings: ReaderSettings | None = None) -> None:
        settings = settings or ReaderSettings()
        self.spec = spec
        self.feed = feed
        self.network = not (spec.is_local_file or spec.is_stdin)
        self.reconnect = settings.reconnect and self.network
        self.realtime = spec.is_local_file if settings.realtime is None else settings.realtime
        if not (settings.pace > 0 and np.isfinite(settings.pace)):
            raise ValueError(f"pace must be a positive number, got {settings.pace}")
        self.pace = float(settings.pace)
        self.backoff = Backoff(0.5, settings.backoff_max)
        self.timeouts = (settings.open_timeout, settings.read_timeout)
        self.state = "connecting"
        self.reconnects = 0
        self.error: str | None = None  # why the source ended, when it ended on a failure
        self.sample_rate: int | None = None
        self._pushed = 0  # frames delivered or reported lost (stream clock)
        self._origin: float | None = None
        self._connected_once = False
        self.relayed = False  # PyAV's ffmpeg lacks the protocol: the system ffmpeg carries it (sources/relay.py)
        self._relay: Relay | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"streamdet-source-{spec.name}", daemon=True)

    # --- control -----------------------------------------------------------------------------
    def start(self) -> SourceReader:
        """Start the reader thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to stop (it ends after the current read; network reads time out)."""
        self._stop.set()
        relay = self._relay
        if relay is not None:
            relay.terminate()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            av = import_av()
            while not self._stop.is_set():
                reason = self._connection(av)
                if self._stop.is_set():
                    break
                if not self.reconnect:
                    if reason is not None:
                        self.error = reason
                    break
                self._disconnected(reason or "end of stream")
                self._stop.wait(self.backoff.next())
        except UnsupportedSourceError as exc:
            self.error = str(exc)
        except Exception as exc:  # never let a reader die silently
            self.error = short_reason(exc)
        finally:
            self.state = "ended"
            self.feed.status(SourceStatus("ended", self.spec.name, _wall_clock(), self.reconnects,
                                          reason=self.error or ("stopped" if self._stop.is_set() else "end of stream")))
            self.feed.end(self.spec.name)

    def _connection(self, av: Any) -> str | None:
        """One connection: open, decode until it ends; None at a clean end, else the reason it failed."""
        connect_time = _wall_clock()
        options = dict(OPEN_OPTIONS)
        relay = None
        try:
            if self.relayed:
                relay = self._relay = Relay(self.spec.av_url, self.timeouts[1])
                if self._stop.is_set():  # stop() came before the relay existed
                    relay.terminate()
                container = av.open(relay.output, options=options)
            elif self.network:
                container = av.open(self.spec.av_url, options=options, timeout=self.timeouts)
            else:
                container = av.open(self.spec.av_url, options=options)
        except av.ProtocolNotFoundError:
            if not can_relay(self.spec.av_url):
                raise UnsupportedSourceError(unsupported_protocol(self.spec.av_url)) from None
            self.relayed = True  # from now on every connection goes through the system ffmpeg
            return self._connection(av)
        except (av.FFmpegError, OSError) as exc:
            reason = self._end_relay(relay)
            return f"cannot open: {reason or short_reason(exc)}"
        try:
            if not container.streams.audio:
                return "no audio stream"
            reason = self._decode(av, container, connect_time)
            return reason if relay is None else (reason or self._end_relay(relay) or None)
        except av.ExitError:  # the read timeout interrupted a read
            return f"no data for {self.timeouts[1]:g} s"
        except (av.FFmpegError, OSError) as exc:
            return (relay is not None and self._end_relay(relay)) or short_reason(exc)
        finally:
            container.close()
            self._end_relay(relay)

    def _end_relay(self, relay: Relay | None) -> str:
        """Close the relay (when there is one); ffmpeg's last error line, or an empty string."""
        if relay is None:
            return ""
        relay.close()
        self._relay = None
        return relay.reason()

    def _decode(self, av: Any, container: Any, connect_time: float) -> str | None:
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate)
        if self.sample_rate is None:
            self.sample_rate = rate
            self.feed.format(self.spec.name, rate)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
        self._on_connected(connect_time)
        expected: float | None = None
        for packet in container.demux(stream):
            if self._stop.is_set():
                return None
            try:
                frames = packet.decode()
            except av.InvalidDataError:  # a corrupt packet on the network: skip it
                continue
            for frame in frames:
                if frame.time is not None:
                    if expected is not None and frame.time - expected > GAP_TOLERANCE:
                        self._lose(round((frame.time - expected) * self.sample_rate))
                    expected = frame.time + frame.samples / frame.sample_rate
                for out in resampler.resample(frame):
                    self._deliver(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):  # the resampler's tail arrives at once: no clock anchor
            self._deliver(out.to_ndarray().reshape(-1), anchor=False)
        return None

    def _on_connected(self, connect_time: float) -> None:
        lost = 0
        if self._connected_once:
            self.reconnects += 1
            if self._origin is not None and self.sample_rate:
                lost = round((connect_time - self._origin) * self.sample_rate) - self._pushed
                self._lose(lost)
        self._connected_once = True
        self.state = "live"
        self.backoff.reset()
        seconds = max(0, lost) / self.sample_rate if self.sample_rate else 0.0
        # The wall time of a connection is when the successful attempt began: its audio starts there.
        self.feed.status(SourceStatus("connected", self.spec.name, connect_time, self.reconnects, lost=seconds))

    def _disconnected(self, reason: str) -> None:
        if self.state != "reconnecting":  # one status per outage, not one per failed attempt
            self.state = "reconnecting"
            self.feed.status(SourceStatus("disconnected", self.spec.name, _wall_clock(), self.reconnects,
                                          reason=reason))

    def _lose(self, frames: int) -> None:
        if frames > 0:
            self._pushed += frames
            self.feed.lost(self.spec.name, frames)

    def _deliver(self, samples: np.ndarray, anchor: bool = True) -> None:
        if samples.size == 0 or self.sample_rate is None:
            return
        end = self._pushed + samples.size
        if self.realtime:
            if self._origin is None:
                self._origin = _wall_clock()
                self.feed.origin(self.spec.name, self._origin)
            delay = self._origin + end / (self.sample_rate * self.pace) - _wall_clock()
            if delay > 0:
                self._stop.wait(delay)
        candidate = _wall_clock() - end / self.sample_rate
        if self._origin is None or (anchor and self.pace == 1.0 and candidate < self._origin - 1e-3):
            self._origin = candidate
            self.feed.origin(self.spec.name, candidate)
        self.feed.audio(self.spec.name, np.ascontiguousarray(samples, dtype=np.float32))
        self._pushed = end
