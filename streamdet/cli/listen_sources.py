"""``streamdet listen --url`` and several ``--input``: live detection on cameras, network streams,
recordings, standard input and audio inputs together, and ``--mqtt`` publishing for every ``listen`` input.

Each ``--url [name=]location`` (:mod:`streamdet.sources`) and each ``--input [name=]device`` (a PortAudio
input, :class:`~streamdet.live.LiveStream`) is one named stream; all of them run on one detector, whose
live scheduler evaluates the windows due on every stream in one batched inference call per cycle. Output as
for one device: JSON lines (one per onset and offset, plus one per connection change: ``{"type":
"connected" | "disconnected" | "ended", "stream", "wall_time", "reconnects", "lost", "reason"}``) or, on a
terminal, a live view of the streams and recent events. The command ends after ``--duration``, on Ctrl-C
(130), or when every stream has ended (files and pipes end; network sources are reopened with back-off
unless ``--no-reconnect``; an audio input that stops delivering audio ends with an error while the others
go on); exit 1 when a stream failed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import typer

from .common import fail
from .text import plain, printable

if TYPE_CHECKING:
    from ..detector import Detector
    from ..integrations.mqtt import MqttPublisher
    from ..live import LiveStream
    from ..sources import SourceGroup, SourceSpec

URL_HELP = (r"A network or piped source, repeatable, beside or instead of --input: \[NAME=]URL, any location "
            "ffmpeg reads (rtsp://, http(s)://, udp://, tcp://, a local file played in real time, - for standard "
            "input; srt:// through the system ffmpeg, as PyAV's lacks it). Needs the stream extra.")
# (rich reads "[s]" as markup in --help: the brackets are escaped)
MQTT_HELP = ("Publish states, events and Home Assistant discovery to this broker: "
             r"mqtt\[s]://\[user:pass@]host\[:port] (needs the mqtt extra).")
MQTT_PREFIX_HELP = "First topic level of the MQTT messages."
DISCOVERY_HELP = "Home Assistant's MQTT discovery prefix ('' sends no discovery)."
RECENT_EVENTS = 8
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_inputs(values: list[str]) -> list[tuple[str, str]]:
    """The ``--input [name=]device`` values as ``(stream name, device)``; unnamed, the stream is named after
    the device (``-i 3`` is stream ``3``). The device is an index or (part of) a name, as `streamdet devices`
    lists them; exit 2 when a value is empty."""
    out = []
    for value in values:
        name, sep, device = value.partition("=")
        if not (sep and _NAME.match(name) and device):
            name, device = value, value
        if not device.strip():
            fail("--input: an empty value (give a device index or name; see `streamdet devices`)", 2)
        out.append((name, device))
    return out


def check_names(names: list[str]) -> None:
    """Exit 2 when two streams (inputs and URLs together) would share a name."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            fail(printable(f"two streams are named {name!r}: name them, e.g. --input mic=pulse --url cam=URL"), 2)
        seen.add(name)


def parse_urls(urls: list[str]) -> list[SourceSpec]:
    """The ``--url`` values as named sources (exit 2 when malformed, or when PyAV is missing)."""
    from ..extras import ExtraMissingError
    from ..sources import import_av, parse_sources

    try:
        specs = parse_sources(urls)
        import_av()
    except ExtraMissingError as exc:
        fail(str(exc), 2)
    except ValueError as exc:
        fail(f"--url: {exc}", 2)
    return specs


def check_mqtt(mqtt: str | None) -> None:
    """Exit 2 before anything starts when ``--mqtt`` is malformed or paho-mqtt is missing."""
    if mqtt is None:
        return
    from ..extras import ExtraMissingError
    from ..integrations.mqtt import BrokerAddress, import_paho

    try:
        BrokerAddress.parse(mqtt)
        import_paho()
    except ExtraMissingError as exc:
        fail(str(exc), 2)
    except ValueError as exc:
        fail(str(exc), 2)


def open_publisher(mqtt: str | None, det: Detector, streams: list[str], prefix: str,
                   discovery_prefix: str) -> MqttPublisher | None:
    """A started MQTT publisher announcing ``streams`` (None without ``--mqtt``)."""
    if mqtt is None:
        return None
    from ..integrations.mqtt import MqttPublisher

    publisher = MqttPublisher(mqtt, det.labels, prefix=prefix, discovery_prefix=discovery_prefix or None,
                              model=det.session.path.name).start()
    for name in streams:
        publisher.add_stream(name)
    typer.echo(f"publishing to {publisher.address} (topics {prefix}/..., discovery {discovery_prefix}/...)", err=True)
    return publisher


def close_publisher(publisher: MqttPublisher | None) -> None:
    """Send what is queued (a few seconds at most), go offline, and say what was sent and dropped."""
    if publisher is None:
        return
    publisher.close(timeout=5.0)
    stats = publisher.stats()
    typer.echo(f"mqtt {stats['broker']}: {stats['sent']} message(s) sent, {stats['queued']} unsent, "
               f"{stats['dropped']} dropped (queue limit {stats['queue_limit']})", err=True)


class LiveInput:
    """An audio input among the streams: its :class:`~streamdet.live.LiveStream` and whether it still
    delivers audio (a first block within ``start_seconds``, then no pause longer than ``stall_seconds``)."""

    def __init__(self, name: str, device: str, live: LiveStream, start_seconds: float, stall_seconds: float) -> None:
        self.name = name
        self.device = device
        self.live = live
        self.start_seconds = start_seconds
        self.stall_seconds = stall_seconds
        self.error: str | None = None
        self.closed = False
        self._last_end = 0
        self._last_progress = time.monotonic()

    def check(self) -> str | None:
        """Why the input stopped (None while it delivers audio, or once closed)."""
        if self.closed:
            return None
        now = time.monotonic()
        end = self.live.ring.end
        if end != self._last_end:
            self._last_end, self._last_progress = end, now
        waited = now - self._last_progress
        if self.live.device_stopped:
            return "the input stream stopped (device disconnected?)"
        if end == 0 and waited > self.start_seconds:
            return f"the device delivered no audio in {self.start_seconds:g} s"
        if end and waited > self.stall_seconds:
            return f"no audio from the device for {waited:.1f} s (disconnected or vanished?)"
        return None

    def close(self) -> list[Any]:
        """Stop capturing and close the stream (open events end); its last updates wait in ``live.get``."""
        if self.closed:
            return []
        self.closed = True
        return self.live.close()

    def row(self) -> dict[str, Any]:
        """The input's row in the view and the summary (the keys of ``SourceGroup.stats()`` rows)."""
        stats = self.live.stats()
        state = "failed" if self.error else "ended" if self.closed else "live" if self.live.ring.end else "connecting"
        return {"stream": self.name, "url": f"input {self.device}", "state": state, "reconnects": 0,
                "position_s": self.live.stream.position, "lost_s": stats["lost_s"], "error": self.error,
                "overflows": self.live.overflows}


class SourcesView:
    """The terminal view: one row per stream (state, position, lost audio, reconnects) and recent events."""

    def __init__(self, group: SourceGroup, inputs: list[LiveInput] | None = None) -> None:
        self.group = group
        self.inputs = inputs or []
        self.recent: deque[Any] = deque(maxlen=RECENT_EVENTS)
        self.t0 = time.monotonic()

    def add(self, item: Any) -> None:
        """Remember an update or a status for the recent list."""
        self.recent.appendleft(item)

    def render(self) -> Any:
        """A rich Panel of the sources and the recent updates and connection changes."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        sources = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("stream", "state", "position s", "lost s", "reconnects", "url"):
            sources.add_column(col, justify="right" if col.endswith(("s", "reconnects")) else "left")
        for row in [*(i.row() for i in self.inputs), *self.group.stats().values()]:
            style = {"live": "green", "reconnecting": "yellow", "ended": "dim", "failed": "red"}.get(row["state"], "")
            sources.add_row(plain(row["stream"]), f"[{style}]{row['state']}[/]" if style else row["state"],
                            f"{row['position_s']:.1f}", f"{row['lost_s']:.2f}", str(row["reconnects"]),
                            plain(row["url"]))
        recent = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("time", "stream", "what", "onset s", "conf"):
            recent.add_column(col)
        for item in self.recent:
            d = item.to_dict()
            when = time.strftime("%H:%M:%S", time.localtime(d["wall_time"])) if d.get("wall_time") else "-"
            if "label" in d:
                recent.add_row(when, plain(d["stream"]), plain(f"{d['type']} {d['label']}"), f"{d['onset']:.2f}",
                               f"{d['confidence']:.2f}")
            else:
                note = f"lost {d['lost']:.2f} s" if d["lost"] else d["reason"]
                recent.add_row(when, plain(d["stream"]), Text.assemble((d["type"], "yellow"), " ", printable(note)),
                               "", "")
        n = len(self.group.specs) + len(self.inputs)
        title = f"streamdet listen · {n} stream(s) · {time.monotonic() - self.t0:.0f} s"
        return Panel(Group(sources, "", recent), title=title, title_align="left", subtitle="Ctrl-C to stop",
                     subtitle_align="right")


def listen_to_sources(det: Detector, specs: list[SourceSpec], output_format: str, duration: float | None,
                      publisher: MqttPublisher | None, reconnect: bool = True,
                      inputs: list[LiveInput] | None = None, pace: float = 1.0) -> int:
    """Run the sources and the (started) audio inputs until they end, ``duration`` passes or Ctrl-C; return
    the exit code. ``pace``: local files play this many times faster than real time."""
    from ..sources import ReaderSettings, SourceGroup, SourceStatus

    inputs = inputs or []
    group = SourceGroup(det, specs, on_update=publisher, settings=ReaderSettings(reconnect=reconnect, pace=pace))
    view = SourcesView(group, inputs) if output_format == "live" else None
    n_events = 0

    def emit(item: Any) -> None:
        nonlocal n_events
        if getattr(item, "type", "") == "offset":
            n_events += 1
        if view is not None:
            view.add(item)
        else:
            sys.stdout.write(json.dumps(item.to_dict()) + "\n")
            sys.stdout.flush()

    def poll_inputs() -> None:
        for source in inputs:
            while (update := source.live.get(timeout=0)) is not None:
                emit(update)
            reason = source.check()
            if reason is not None:  # this input stopped; the other streams go on
                source.error = reason
                source.close()
                while (update := source.live.get(timeout=0)) is not None:
                    emit(update)
                emit(SourceStatus("ended", source.name, time.time(), reason=reason))

    try:
        wait_for_inputs(inputs)
    except KeyboardInterrupt:
        for source in inputs:
            source.close()
        det.close()
        close_publisher(publisher)
        typer.echo("interrupted", err=True)
        return 130
    names = ", ".join([*(f"{i.name}=input {i.device}" for i in inputs), *(f"{s.name}={s.url}" for s in specs)])
    typer.echo(printable(f"listening to {names}{f' for {duration:g} s' if duration else ''} (Ctrl-C to stop)"),
               err=True)
    code, reason = 0, None
    display: Any = None
    start = time.monotonic()
    group.start()
    try:
        if view is not None:
            from rich.live import Live

            display = Live(view.render(), refresh_per_second=4, transient=False)
            display.start()
        while not (duration is not None and time.monotonic() - start >= duration):
            item = group.get(timeout=0.05)
            if item is not None:
                emit(item)
            poll_inputs()
            if item is None and group.finished and all(i.closed for i in inputs):
                break
            if display is not None:
                display.update(view.render())
    except KeyboardInterrupt:
        code, reason = 130, "interrupted"
    except Exception as exc:  # an inference error reported by the scheduler thread
        code, reason = 1, f"{type(exc).__name__}: {exc}"
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # a second Ctrl-C while closing exits at once
    try:
        for source in inputs:
            source.close()
        group.close(timeout=3.0)
        while (item := group.get(timeout=0)) is not None:
            emit(item)
        for source in inputs:
            while (update := source.live.get(timeout=0)) is not None:
                emit(update)
        det.close()
    finally:
        if display is not None:
            display.update(view.render())
            display.stop()
        close_publisher(publisher)
    for row in [*(i.row() for i in inputs), *group.stats().values()]:
        line = f"{row['stream']}: listened {row['position_s']:.1f} s; lost {row['lost_s']:.2f} s; "
        line += (f"{row['overflows']} overflow(s)" if "overflows" in row else f"{row['reconnects']} reconnect(s)")
        if row["error"]:
            line += f"; failed: {row['error']}"
            code = code or 1
        typer.echo(printable(line), err=True)
    typer.echo(f"{n_events} event(s)", err=True)
    if reason is not None:
        typer.echo(reason if code == 130 else printable(f"error: {reason}"), err=True)
    return code


def wait_for_inputs(inputs: list[LiveInput]) -> None:
    """Wait until every audio input has delivered its first block (some hosts take a second or two), or has
    waited its ``start_seconds`` (it is then reported as failed by the loop)."""
    deadline = time.monotonic() + max((i.start_seconds for i in inputs), default=0.0)
    while any(i.live.ring.end == 0 for i in inputs) and time.monotonic() < deadline:
        time.sleep(0.01)
