"""``streamdet devices``: the audio input devices PortAudio sees (what ``streamdet listen --input`` takes)."""

from __future__ import annotations

import json
import sys

import typer

from .common import fail, import_sounddevice
from .text import plain


def input_devices() -> list[dict]:
    """Input devices as dicts: index, name, hostapi, channels, default_samplerate, default (bool)."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in = sd.default.device[0]
    except sd.PortAudioError as exc:
        fail(f"PortAudio could not list the devices: {exc}", 1)
    rows = []
    for dev in devices:
        if dev["max_input_channels"] <= 0:
            continue
        rows.append({
            "index": int(dev["index"]),
            "name": dev["name"],
            "hostapi": hostapis[dev["hostapi"]]["name"],
            "channels": int(dev["max_input_channels"]),
            "default_samplerate": float(dev["default_samplerate"]),
            "default": int(dev["index"]) == default_in,
        })
    return rows


def devices_command(
    output_format: str = typer.Option("table", "--format", "-f", help="table or json."),
) -> None:
    """List the audio input devices: index, name, host API, channels, default sample rate.

    Pass the index or (part of) the name to `streamdet listen --input`. The default input is marked *."""
    if output_format not in ("table", "json"):
        fail(f"--format must be table or json, not {output_format!r}", 2)
    rows = input_devices()
    if output_format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not rows:
        typer.echo("no audio input devices found (is a microphone connected, or an audio server running?)", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col, justify in (("", "left"), ("index", "right"), ("name", "left"), ("host API", "left"),
                         ("channels", "right"), ("default rate", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row("*" if r["default"] else "", str(r["index"]), plain(r["name"]), plain(r["hostapi"]),
                      str(r["channels"]), f"{r['default_samplerate']:g} Hz")
    Console(width=None if sys.stdout.isatty() else 120).print(table)
