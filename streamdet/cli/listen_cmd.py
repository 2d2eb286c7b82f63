"""``streamdet listen``: detect events live on an audio input.

The input (``--input/-i``) is opened at its native rate through sounddevice (``Detector.listen``) and
resampled to the model rate; ``--device`` is the compute device, as in every command. ``listen --device
INPUT`` (a value that is not a compute device) and ``--compute`` still work for one release, with a warning.
On a terminal a rich live view shows per-class meters (latest scores against the on threshold), recent events
with their times, the input level, the lost-audio counter and the latency;
with ``--format jsonl``, or when stdout is not a terminal, every update is one JSON line (docs/DESIGN.md §4:
``type, label, onset, offset, confidence, stream, wall_time``).

Ending: ``--duration`` seconds (exit 0), Ctrl-C (open events are closed and printed, exit 130), or the
device stops delivering audio (vanished: open events closed and printed, exit 1). A missing device
exits 2, a busy one or a missing PortAudio exits 1. A second Ctrl-C while closing exits at once.

Several streams (``--input`` repeated, ``--input NAME=DEVICE``, and ``--url``, together in any mix) run on one
detector through :mod:`streamdet.cli.listen_sources`, with a view of all the streams instead of the meters.

Nothing here waits on the audio system without a deadline: opening the input (``OPEN_SECONDS``) and
PortAudio's start/stop/close (:func:`streamdet.live.call_with_deadline`) are abandoned when a frozen audio
server does not answer, so a frozen server ends ``listen`` with the summary, the open events closed and a
clear error within a few seconds (``STALL_SECONDS`` plus the close deadline), and Ctrl-C always works.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from . import listen_sources
from .common import error, fail, import_sounddevice, load_detector, model_line, stdout_is_terminal, warn
from .options import COMPUTE_DEVICES, InputOption, ModelOption, is_compute_device, with_detection_options
from .text import plain, printable

if TYPE_CHECKING:
    from ..detector import Detector
    from ..events import Update
    from ..live import LiveStream

OPEN_SECONDS = 15.0  # opening the input (PortAudio's device query and open) may take this long
STALL_SECONDS = 3.0  # no audio from the device for this long (after the first block): it vanished
START_SECONDS = 10.0  # no first block within this long: the device delivers nothing (some take ~2 s to start)
LEVEL_SECONDS = 0.1  # input level: RMS/peak of the newest 100 ms
RECENT_EVENTS = 8


class DeviceStoppedError(RuntimeError):
    """The input device stopped delivering audio."""


def _device_arg(device: str | None) -> int | str | None:
    if device is None or device == "":
        return None
    return int(device) if device.strip().lstrip("-").isdigit() else device


def _open(det: Any, device: int | str | None, sample_rate: float | None, name: str) -> Any:
    """Open and start the live input as stream ``name``, mapping device problems to clear errors (exit 2
    missing, 1 otherwise)."""
    from ..live import DeviceTimeoutError, call_with_deadline, forget_portaudio_at_exit

    sd = import_sounddevice()
    shown = "the default input device" if device is None else f"input device {device!r}"
    try:
        live = call_with_deadline(lambda: det.listen(device, sample_rate=sample_rate, name=name),
                                  OPEN_SECONDS, f"opening {shown}")
        live.start()
        return live
    except DeviceTimeoutError as exc:
        forget_portaudio_at_exit()
        error(f"cannot open {shown}: {exc}")
        _exit_now(1)
    except ValueError as exc:  # sounddevice: no device matching / not an input device
        fail(f"{shown}: {exc} (see `streamdet devices`)", 2)
    except sd.PortAudioError as exc:
        text = str(exc)
        if "-9996" in text or "Invalid device" in text or "Error querying device" in text:
            fail(f"{shown}: no such device ({text}; see `streamdet devices`)", 2)
        if "-9985" in text or "unavailable" in text.lower() or "busy" in text.lower():
            fail(f"{shown} is busy or unavailable ({text}); close the program using it and try again", 1)
        fail(f"cannot open {shown}: {text}", 1)
    except OSError as exc:
        fail(f"cannot open {shown}: {exc}", 1)


def _level_db(live: Any) -> tuple[float, float]:
    """(RMS, peak) in dBFS of the newest audio in the live stream's ring buffer."""
    import numpy as np

    ring = live.ring
    n = min(int(LEVEL_SECONDS * live.sample_rate), ring.end, ring.capacity // 2)
    if n <= 0:
        return -math.inf, -math.inf
    buf = np.empty((n, ring.channels), np.float32)
    ring.read_into(buf, ring.end - n)
    rms = float(np.sqrt(np.mean(np.square(buf, dtype=np.float64))))
    peak = float(np.max(np.abs(buf)))
    return (20 * math.log10(rms) if rms > 0 else -math.inf), (20 * math.log10(peak) if peak > 0 else -math.inf)


def _clock(wall: float | None) -> str:
    if wall is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int((wall % 1) * 10)}"


class LiveView:
    """The rich renderable of the terminal view (rebuilt on every refresh)."""

    def __init__(self, det: Detector, live: LiveStream, device_label: str) -> None:
        self.det = det
        self.live = live
        self.device_label = device_label
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.t0 = time.monotonic()
        self.n_events = 0

    def add(self, update: Update) -> None:
        """Record an onset (a new row, newest first) or an offset (closes its row) for the events list."""
        if update.type == "onset":
            self.n_events += 1
            self.recent.appendleft({"label": update.label, "onset": update.onset, "offset": None,
                                    "confidence": update.confidence, "wall": update.wall_time})
            return
        for item in self.recent:
            if item["label"] == update.label and abs(item["onset"] - update.onset) < 1e-9:
                item.update(offset=update.offset, confidence=update.confidence)
                return
        self.n_events += 1  # an offset whose onset scrolled away (or was never seen)
        self.recent.appendleft({"label": update.label, "onset": update.onset, "offset": update.offset,
                                "confidence": update.confidence, "wall": update.wall_time})

    def render(self, height: int | None = None) -> Any:
        """A rich Panel: a status line with the input level, lost audio, latency and backlog, per-class meters
        against the on threshold, and the recent events with their times. With ``height`` (the terminal's
        rows) the events list is shortened so that the panel fits: rich would otherwise crop its bottom."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        det, live = self.det, self.live
        scores = live.stream.latest_scores
        meters = Table.grid(padding=(0, 1))
        meters.add_column(justify="right")
        meters.add_column()
        meters.add_column(justify="right")
        width = 40
        for i, label in enumerate(det.labels):
            value = float(scores[i]) if i < len(scores) else 0.0
            on = det.thresholds[label][0]
            filled = round(value * width)
            mark = min(width - 1, round(on * width))
            bar = Text()
            style = "bold green" if value >= on else "cyan"
            for j in range(width):
                if j == mark:
                    bar.append("│", style="red" if j >= filled else "bold red")
                elif j < filled:
                    bar.append("█", style=style)
                else:
                    bar.append("·", style="dim")
            meters.add_row(plain(label), bar, f"{value:.2f}")

        events = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for col, justify in (("time", "left"), ("label", "left"), ("onset s", "right"), ("duration", "right"),
                             ("conf", "right")):
            events.add_column(col, justify=justify)  # type: ignore[arg-type]
        rows = len(self.recent)
        if height is not None:  # border 2, status 2, blank lines 2, meters, events header
            rows = max(1, min(rows, height - 7 - len(det.labels)))
        for item in list(self.recent)[:rows]:
            open_ = item["offset"] is None
            duration = (live.stream.position - item["onset"]) if open_ else item["offset"] - item["onset"]
            events.add_row(_clock(item["wall"]), plain(item["label"], "bold green" if open_ else ""),
                           f"{item['onset']:.2f}", f"{duration:.1f}" + (" …" if open_ else ""),
                           f"{item['confidence']:.2f}")
        if not self.recent:
            events.add_row("", Text("(no events yet)", style="dim"), "", "", "")

        rms, peak = _level_db(live)
        stats = live.stats()
        last = live.latencies[-1] if live.latencies else float("nan")
        lat = "-" if math.isnan(last) else f"{last:.2f} s (p95 {stats['latency_p95_s']:.2f} s)"
        lost = stats["lost_s"]
        status = Text()
        status.append(f"input {rms:6.1f} dBFS (peak {peak:6.1f})   ", style="red" if peak > -0.5 else "")
        status.append(f"lost {lost:.2f} s, {live.overflows} overflow(s)   ", style="yellow" if lost else "")
        status.append(f"latency {lat}   backlog {stats['lag_s']:.2f} s")
        if stats["skipped_s"]:
            status.append(f"   skipped {stats['skipped_s']:.1f} s", style="yellow")
        elapsed = time.monotonic() - self.t0
        title = (f"streamdet listen · {self.device_label} @ {live.sample_rate:g} Hz · "
                 f"{det.session.path.name} · {elapsed:.0f} s · {self.n_events} event(s)")
        return Panel(Group(status, Text(""), meters, Text(""), events), title=plain(title), title_align="left",
                     subtitle="Ctrl-C to stop", subtitle_align="right")


@with_detection_options
def listen_command(
    input_device: InputOption = None,
    model: ModelOption = None,
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds (default: run "
                                                                    "until Ctrl-C).", show_default=False),
    output_format: str | None = typer.Option(None, "--format", "-f", help="live (a terminal view) or jsonl (one "
                                                                          "JSON line per onset/offset). Default: "
                                                                          "live on a terminal, else jsonl.",
                                             show_default=False),
    sample_rate: float | None = typer.Option(None, "--sample-rate", help="Open the input at this rate instead of "
                                                                         "its default.", show_default=False),
    device: str = typer.Option("auto", "--device", "-d", help=f"Compute device: {COMPUTE_DEVICES}. (An audio input "
                                                               "here is read as --input for one more release.)"),
    compute: str | None = typer.Option(None, "--compute", hidden=True, help="Deprecated: use --device.",
                                       show_default=False),
    # --- network sources and MQTT (issue 20): streamdet/cli/listen_sources.py ---
    url: list[str] | None = typer.Option(None, "--url", "-u", help=listen_sources.URL_HELP, show_default=False),
    reconnect: bool = typer.Option(True, "--reconnect/--no-reconnect", help="Reopen a --url network source that "
                                                                             "drops, with back-off."),
    pace: float = typer.Option(1.0, "--pace", help="Play local --url files this many times faster than real time "
                                                   "(their event wall times are then the stream clock)."),
    mqtt: str | None = typer.Option(None, "--mqtt", help=listen_sources.MQTT_HELP, show_default=False),
    mqtt_prefix: str = typer.Option("streamdet", "--mqtt-prefix", help=listen_sources.MQTT_PREFIX_HELP),
    discovery_prefix: str = typer.Option("homeassistant", "--mqtt-discovery-prefix",
                                         help=listen_sources.DISCOVERY_HELP),
    *,
    settings: dict[str, Any],
) -> None:
    """Detect sound events live on an audio input.

    Exit 0 after --duration, 130 on Ctrl-C (open events are closed and printed first), 1 when the input
    is busy or stops delivering audio, 2 on usage errors (unknown input, bad options)."""
    input_device, device = _input_and_device(input_device, device, compute)
    if output_format is None:
        output_format = "live" if stdout_is_terminal() else "jsonl"
    output_format = output_format.lower()
    if output_format not in ("live", "jsonl"):
        fail(f"--format must be live or jsonl, not {output_format!r}", 2)
    if output_format == "live" and not stdout_is_terminal():
        output_format = "jsonl"  # the live view needs a terminal
    if duration is not None and not duration > 0:
        fail(f"--duration must be positive, got {duration}", 2)
    if sample_rate is not None and not sample_rate > 0:
        fail(f"--sample-rate must be positive, got {sample_rate}", 2)
    if not (pace > 0 and math.isfinite(pace)):
        fail(f"--pace must be a positive number, got {pace}", 2)
    sources = listen_sources.parse_urls(url) if url else []
    if pace != 1.0 and not sources:
        fail("--pace applies to --url files only", 2)
    inputs = listen_sources.parse_inputs(input_device or [])
    listen_sources.check_names([name for name, _ in inputs] + [s.name for s in sources])
    listen_sources.check_mqtt(mqtt)
    det = load_detector(model, device, settings)
    if sources or len(inputs) > 1:  # several streams on one detector: streamdet/cli/listen_sources.py
        opened = [listen_sources.LiveInput(name, dev, _open(det, _device_arg(dev), sample_rate, name),
                                           START_SECONDS, STALL_SECONDS) for name, dev in inputs]
        typer.echo(model_line(det), err=True)
        names = [i.name for i in opened] + [s.name for s in sources]
        publisher = listen_sources.open_publisher(mqtt, det, names, mqtt_prefix, discovery_prefix)
        for source in opened:
            source.live.on_event = publisher
        raise typer.Exit(listen_sources.listen_to_sources(det, sources, output_format, duration, publisher, reconnect,
                                                          opened, pace))
    name, dev = inputs[0] if inputs else ("live", None)
    live = _open(det, _device_arg(dev), sample_rate, name)
    publisher = listen_sources.open_publisher(mqtt, det, [live.stream.name], mqtt_prefix, discovery_prefix)
    live.on_event = publisher
    device_label = "default input" if dev is None else str(dev)
    typer.echo(model_line(det), err=True)
    code = _wait_for_audio(det, live, device_label)
    if code is None:
        typer.echo(printable(f"listening on {device_label} at {live.sample_rate:g} Hz"
                             f"{f' for {duration:g} s' if duration else ''} (Ctrl-C to stop)"), err=True)
        code = _run(det, live, output_format, duration, device_label)
    listen_sources.close_publisher(publisher)
    if live.device_abandoned:
        _exit_now(code)
    raise typer.Exit(code)


def _exit_now(code: int) -> NoReturn:
    """Exit at once (after flushing): a thread is stuck in PortAudio, and the interpreter's normal shutdown
    would wait on it or complain about the objects it still holds."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _input_and_device(input_device: list[str] | None, device: str,
                      compute: str | None) -> tuple[list[str] | None, str]:
    """``(audio inputs, compute device)`` from ``--input``, ``--device`` and the deprecated ``--compute``: a
    ``--device`` that is not a compute device is the old meaning (the audio input), kept for one release."""
    if not is_compute_device(device):
        if input_device:
            fail(f"--device must be a compute device ({COMPUTE_DEVICES}), got {device!r}; the audio input is "
                 "--input", 2)
        warn(f"`listen --device {device}` for the audio input is deprecated and will be removed in the next "
             f"release; use `--input {device}` (--device is the compute device, as in every command)")
        input_device, device = [device], "auto"
    if compute is not None:
        if device != "auto":
            fail("give the compute device once: --device (--compute is its deprecated name)", 2)
        warn("`listen --compute` is deprecated and will be removed in the next release; use --device")
        device = compute
    return input_device, device


def _wait_for_audio(det: Any, live: Any, device_label: str) -> int | None:
    """Wait until the device delivers its first block (some hosts take a second or two to start);
    None when audio flows, else the exit code (after closing)."""
    deadline = time.monotonic() + START_SECONDS
    try:
        while live.ring.end == 0:
            if time.monotonic() > deadline:
                live.close()
                det.close()
                typer.echo(printable(f"error: {device_label}: the device delivered no audio in {START_SECONDS:g} s"),
                           err=True)
                _report_abandoned(live, device_label)
                return 1
            time.sleep(0.01)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))
        live.close()
        det.close()
        typer.echo("interrupted", err=True)
        _report_abandoned(live, device_label)
        return 130
    return None


def _run(det: Any, live: Any, output_format: str, duration: float | None, device_label: str) -> int:
    """The listening loop; returns the exit code. Every update is emitted exactly once."""
    from rich.console import Console

    view = LiveView(det, live, device_label) if output_format == "live" else None
    console = Console()
    all_events: list[Any] = []

    def emit(update: Any) -> None:
        if update.type == "offset":
            all_events.append(update)
        if view is not None:
            view.add(update)
        else:
            sys.stdout.write(json.dumps(update.to_dict()) + "\n")
            sys.stdout.flush()

    def drain() -> None:
        while (u := live.get(timeout=0)) is not None:
            emit(u)

    code, reason = 0, None
    start = time.monotonic()
    last_end, last_progress = live.ring.end, start
    display: Any = None
    try:
        if view is not None:
            from rich.live import Live

            display = Live(view.render(console.size.height), console=console, refresh_per_second=10, transient=False)
            display.start()
        while True:
            update = live.get(timeout=0.1)
            if update is not None:
                emit(update)
                drain()
            now = time.monotonic()
            if display is not None:
                display.update(view.render(console.size.height))
            if duration is not None and now - start >= duration:
                break
            end = live.ring.end
            if end != last_end:
                last_end, last_progress = end, now
            waited = now - last_progress
            if live.device_stopped:
                raise DeviceStoppedError("the input stream stopped (device disconnected?)")
            if waited > STALL_SECONDS:
                raise DeviceStoppedError(f"no audio from the device for {waited:.1f} s (disconnected or vanished?)")
    except KeyboardInterrupt:
        code, reason = 130, "interrupted"
    except DeviceStoppedError as exc:
        code, reason = 1, str(exc)
    except Exception as exc:  # an inference error reported by the scheduler thread
        code, reason = 1, f"{type(exc).__name__}: {exc}"
    # Close: a second Ctrl-C while closing exits at once.
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    try:
        final = live.close()
        drain()
        det.close()
    finally:
        if display is not None:
            display.update(view.render())
            display.stop()
    closed_at_stop = [u for u in final if u.type == "offset"]
    if view is not None:
        _print_summary(console, all_events, closed_at_stop)
    stats = live.stats()
    typer.echo(
        f"listened {live.stream.position:.1f} s: {len(all_events)} event(s); lost {stats['lost_s']:.2f} s "
        f"({live.overflows} overflow(s)); latency p50 {stats['latency_p50_s']:.2f} s, p95 "
        f"{stats['latency_p95_s']:.2f} s",
        err=True,
    )
    if closed_at_stop:
        closed = ", ".join(f"{u.label} {u.onset:.2f}-{u.offset:.2f} s" for u in closed_at_stop)
        typer.echo(printable(f"{len(closed_at_stop)} open event(s) closed at the stop: {closed}"), err=True)
    if code == 1:
        typer.echo(printable(f"error: {device_label}: {reason}"), err=True)
    elif code == 130:
        typer.echo("interrupted", err=True)
    _report_abandoned(live, device_label)
    return code


def _report_abandoned(live: Any, device_label: str) -> None:
    """Say so when stopping the input was abandoned (the audio system did not answer: a frozen server)."""
    if live.device_abandoned:
        typer.echo(printable(f"error: {device_label}: the audio system is not answering ({live.close_error}); "
                             "the input was abandoned"), err=True)


def _print_summary(console: Any, events: list[Any], closed_at_stop: list[Any]) -> None:
    from rich.table import Table

    if not events:
        console.print("no events")
        return
    table = Table(title="events", title_justify="left")
    stopped = {(u.label, u.onset) for u in closed_at_stop}
    columns = [("time", "left"), ("label", "left"), ("onset s", "right"), ("offset s", "right"), ("conf", "right")]
    if stopped:  # a note column only when some event was still open at the stop
        columns.append(("", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for u in sorted(events, key=lambda u: u.onset):
        row = [_clock(u.wall_time), plain(u.label), f"{u.onset:.2f}", f"{u.offset:.2f}", f"{u.confidence:.2f}"]
        if stopped:
            row.append("closed at stop" if (u.label, u.onset) in stopped else "")
        table.add_row(*row)
    console.print(table)
