"""Helpers shared by ``streamdet file``, ``listen``, ``devices`` and ``models``: errors, model and threshold
options, loading a Detector with clear messages, importing sounddevice. Nothing heavy at import time."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from .text import printable

if TYPE_CHECKING:
    from ..detector import Detector

PORTAUDIO_HINT = (
    "PortAudio is not installed, so no audio device can be opened. Install it with "
    "`apt-get install libportaudio2` (Debian/Ubuntu), `dnf install portaudio` (Fedora) or "
    "`brew install portaudio` (macOS), then try again."
)


def error(message: str) -> None:
    """Print ``error: message`` on stderr (control characters escaped); the caller carries on."""
    typer.echo(printable(f"error: {message}"), err=True)


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr (control characters escaped) and exit with ``code``."""
    error(message)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr (control characters escaped)."""
    typer.echo(printable(f"warning: {message}"), err=True)


def resolve_model(model: str | None) -> Path | None:
    """None (bundled default), an existing path, or the bundled model of that name (``alerts``)."""
    if model is None:
        return None
    path = Path(model)
    if path.exists() or path.suffix:
        return path
    from ..session import BUNDLED_DIR

    bundled = BUNDLED_DIR / f"{model}.onnx"
    return bundled if bundled.is_file() else path


def bundled_models() -> list[Path]:
    """The ``.onnx`` files installed with streamdet (the names ``--model`` accepts), sorted."""
    from ..session import BUNDLED_DIR

    return sorted(BUNDLED_DIR.glob("*.onnx")) if BUNDLED_DIR.is_dir() else []


def parse_thresholds(threshold: str | None, thresholds_file: Path | None) -> Any:
    """The Detector ``thresholds`` argument from ``--threshold`` / ``--thresholds`` (exit 2 when malformed)."""
    if threshold is not None and thresholds_file is not None:
        fail("give either --threshold or --thresholds, not both", 2)
    if threshold is not None:
        try:
            values = [float(v) for v in threshold.split(",")]
        except ValueError:
            fail(f"--threshold: expected ON or ON,OFF (numbers in [0, 1]), got {threshold!r}", 2)
        if len(values) not in (1, 2):
            fail(f"--threshold: expected ON or ON,OFF, got {threshold!r}", 2)
        return values[0] if len(values) == 1 else tuple(values)
    if thresholds_file is not None:
        if not thresholds_file.is_file():
            fail(f"--thresholds: {thresholds_file}: no such file", 2)
        try:
            data = json.loads(thresholds_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            fail(f"--thresholds: {thresholds_file}: not valid JSON ({exc})", 2)
        if not isinstance(data, dict):
            fail(f'--thresholds: {thresholds_file}: expected a JSON object {{"label": ON or [ON, OFF]}}', 2)
        return data
    return None


def load_detector(model: str | None, device: str, settings: dict[str, Any]) -> Detector:
    """A Detector with the detection ``settings`` (:func:`streamdet.cli.options.detection_settings`), or exit 2
    with a message naming the problem (model file, metadata, device, settings)."""
    path = resolve_model(model)
    try:
        from ..detector import Detector
    except ImportError as exc:  # onnxruntime missing
        fail(f"cannot load ONNX Runtime ({exc}); install streamdet with the `cpu` or `gpu` extra", 2)
    with model_load_errors(model, path):
        return Detector(path, device=device, **settings)


@contextmanager
def model_load_errors(model: str | None, path: Path | None) -> Iterator[None]:
    """Turn the errors of loading the model at ``path`` (asked for as ``model``) into exit-2 messages that name
    the problem: a missing or unloadable file (with the bundled names when a name was given), bad metadata, bad
    settings (device, thresholds, hop)."""
    from ..model_metadata import ModelMetadataError
    from ..session import ModelLoadError

    try:
        yield
    except ModelLoadError as exc:
        names = [p.stem for p in bundled_models()]
        hint = f" (bundled models: {', '.join(names)})" if names and model is not None else ""
        fail(f"{exc}{hint}", 2)
    except ModelMetadataError as exc:
        fail(f"{path}: not a streamdet model: {exc}", 2)
    except ValueError as exc:
        fail(str(exc), 2)


def model_line(det: Detector) -> str:
    """One line describing the loaded model and settings (for stderr), control characters escaped; with a label
    map, the labels of the events and their members instead of the model's labels."""
    meta = det.metadata
    labels = f"{meta.num_classes} classes ({', '.join(meta.labels)})"
    if det.label_map is not None:
        groups = ", ".join(label if members == [label] else f"{label} = {' | '.join(members)}"
                           for label, members in det.groups.items())
        labels = f"{meta.num_classes} classes, detecting {len(det.labels)} ({groups})"
    return printable(
        f"model {det.session.path.name}: {labels}, "
        f"{meta.sample_rate} Hz, window {meta.window_seconds:g} s; hop {det.hop:g} s, lookahead {det.lookahead:g} s; "
        f"{det.provider.replace('ExecutionProvider', '')}"
        + (f" ({det.session.threads} thread{'s' if det.session.threads > 1 else ''})"
           if det.provider == "CPUExecutionProvider" else "")
    )


def import_sounddevice() -> Any:
    """Import sounddevice, or exit 1 saying how to install PortAudio when its library is missing."""
    try:
        import sounddevice
    except OSError:  # sounddevice raises OSError("PortAudio library not found")
        fail(PORTAUDIO_HINT, 1)
    except ImportError:
        fail("the sounddevice package is missing: `pip install sounddevice` (and PortAudio: "
             "`apt-get install libportaudio2`)", 1)
    return sounddevice


def stdout_is_terminal() -> bool:
    """Whether stdout is an interactive terminal (False when it is closed or replaced by a non-file)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def connect_ray(address: str, command: str) -> Any:
    """The ``ray`` module connected to ``--ray ADDRESS`` (``local`` starts a cluster on this machine's usable
    cores) for ``command``; a missing ray extra or an unreachable cluster exits 2 with a clear message."""
    from ..extras import ExtraMissingError
    from ..scale.cluster import connect
    from ..session import usable_cores

    try:
        return connect(address, command, num_cpus=usable_cores() if address == "local" else None)
    except ExtraMissingError as exc:
        fail(str(exc), 2)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        fail(f"--ray {address}: cannot connect ({exc})", 2)
