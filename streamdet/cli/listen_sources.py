"""``streamdet listen --url``: live detection on cameras, network streams, recordings and standard input,
and ``--mqtt`` publishing for every ``listen`` input.

Each ``--url [name=]location`` is one named stream (:mod:`streamdet.sources`), all batched on one
detector. Output as for a device: JSON lines (one per onset and offset, plus one per connection change:
``{"type": "connected" | "disconnected" | "ended", "stream", "wall_time", "reconnects", "lost",
"reason"}``) or, on a terminal, a live view of the sources and recent events. The command ends after
``--duration``, on Ctrl-C (130), or when every source has ended (files and pipes end; network sources
are reopened with back-off unless ``--no-reconnect``); exit 1 when a source failed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import typer

from .common import fail

if TYPE_CHECKING:
    from ..detector import Detector
    from ..integrations.mqtt import MqttPublisher
    from ..sources import SourceGroup, SourceSpec

URL_HELP = (r"Audio to listen to instead of a device, repeatable: \[NAME=]URL, any location ffmpeg reads "
            "(rtsp://, http(s)://, udp://, tcp://, srt://, a local file played in real time, - for standard "
            "input). Needs the stream extra.")
# (rich reads "[s]" as markup in --help: the brackets are escaped)
MQTT_HELP = ("Publish states, events and Home Assistant discovery to this broker: "
             r"mqtt\[s]://\[user:pass@]host\[:port] (needs the mqtt extra).")
RECENT_EVENTS = 8


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


class SourcesView:
    """The terminal view: one row per source (state, position, lost audio, reconnects) and recent events."""

    def __init__(self, group: SourceGroup) -> None:
        self.group = group
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

        sources = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("stream", "state", "position s", "lost s", "reconnects", "url"):
            sources.add_column(col, justify="right" if col.endswith(("s", "reconnects")) else "left")
        for row in self.group.stats().values():
            style = {"live": "green", "reconnecting": "yellow", "ended": "dim"}.get(row["state"], "")
            sources.add_row(row["stream"], f"[{style}]{row['state']}[/]" if style else row["state"],
                            f"{row['position_s']:.1f}", f"{row['lost_s']:.2f}", str(row["reconnects"]), row["url"])
        recent = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("time", "stream", "what", "onset s", "conf"):
            recent.add_column(col)
        for item in self.recent:
            d = item.to_dict()
            when = time.strftime("%H:%M:%S", time.localtime(d["wall_time"])) if d.get("wall_time") else "-"
            if "label" in d:
                recent.add_row(when, d["stream"], f"{d['type']} {d['label']}", f"{d['onset']:.2f}",
                               f"{d['confidence']:.2f}")
            else:
                note = f"lost {d['lost']:.2f} s" if d["lost"] else d["reason"]
                recent.add_row(when, d["stream"], f"[yellow]{d['type']}[/] {note}", "", "")
        title = f"streamdet listen · {len(self.group.specs)} source(s) · {time.monotonic() - self.t0:.0f} s"
        return Panel(Group(sources, "", recent), title=title, title_align="left", subtitle="Ctrl-C to stop",
                     subtitle_align="right")


def listen_to_sources(det: Detector, specs: list[SourceSpec], output_format: str, duration: float | None,
                      publisher: MqttPublisher | None, reconnect: bool = True, pace: float = 1.0) -> int:
    """Run the sources until they end, ``duration`` passes or Ctrl-C; return the exit code. ``pace``: local
    files play this many times faster than real time."""
    from ..sources import ReaderSettings, SourceGroup

    group = SourceGroup(det, specs, on_update=publisher, settings=ReaderSettings(reconnect=reconnect, pace=pace))
    view = SourcesView(group) if output_format == "live" else None
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

    names = ", ".join(f"{s.name}={s.url}" for s in specs)
    typer.echo(f"listening to {names}{f' for {duration:g} s' if duration else ''} (Ctrl-C to stop)", err=True)
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
            item = group.get(timeout=0.1)
            if item is None and group.finished:
                break
            if item is not None:
                emit(item)
            if display is not None:
                display.update(view.render())
    except KeyboardInterrupt:
        code, reason = 130, "interrupted"
    except Exception as exc:  # an inference error reported by the pump thread
        code, reason = 1, f"{type(exc).__name__}: {exc}"
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # a second Ctrl-C while closing exits at once
    try:
        group.close(timeout=3.0)
        while (item := group.get(timeout=0)) is not None:
            emit(item)
    finally:
        if display is not None:
            display.update(view.render())
            display.stop()
        close_publisher(publisher)
    for row in group.stats().values():
        line = (f"{row['stream']}: listened {row['position_s']:.1f} s; lost {row['lost_s']:.2f} s; "
                f"{row['reconnects']} reconnect(s)")
        if row["error"]:
            line += f"; failed: {row['error']}"
            code = code or 1
        typer.echo(line, err=True)
    typer.echo(f"{n_events} event(s)", err=True)
    if reason is not None:
        typer.echo(reason if code == 130 else f"error: {reason}", err=True)
    return code
