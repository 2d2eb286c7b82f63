"""``streamdet export CHECKPOINT -o model.onnx``: a checkpoint to one verified streamdet ONNX file.

torch, onnx and the exporter are imported inside the command, so ``streamdet --help`` stays torch-free.
Exit codes: 0 written (and verified unless ``--no-verify``), 1 the checkpoint or the export failed, 2 usage error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import short_error
from ..model_metadata import PRECISIONS
from .common import fail
from .text import printable

if TYPE_CHECKING:
    from ..export import ExportReport

BATCHES = ("dynamic", "1")
TRAIN_HINT = "exporting needs torch and onnx: pip install 'streamdet[train]' (install torch first for the CPU wheel)"


def export_command(
    checkpoint: Path = typer.Argument(
        ..., show_default=False,
        help="Checkpoint: official HTS-AT .ckpt, official AST .pth, transformers AST folder or a streamdet "
             "checkpoint (the format and architecture are detected).",
    ),
    output: Path = typer.Option(..., "--output", "-o", show_default=False, help="The .onnx file to write."),
    window_seconds: float | None = typer.Option(
        None, "--window-seconds", "-w", show_default=False,
        help="Fixed window length in seconds. Default: the model's native window (HTS-AT 10 s, AST 10.24 s).",
    ),
    batch: str = typer.Option("dynamic", "--batch", help="Batch axis: dynamic, or 1 (fixed)."),
    precision: str = typer.Option("fp32", "--precision", "-p",
                                  help="fp32, fp16 (front-end kept in fp32) or int8 (dynamic, MatMul weights)."),
    labels: Path | None = typer.Option(
        None, "--labels", show_default=False,
        help="Class names: a JSON list, an AudioSet CSV (index,mid,display_name) or one name per line.",
    ),
    verify: bool = typer.Option(
        True, "--verify/--no-verify",
        help="Compare ONNX Runtime with PyTorch after the export (fp32 must agree within 1e-4).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON instead of a summary."),
) -> None:
    """Export a checkpoint to a streamdet ONNX model (waveform in, framewise and clipwise probabilities out,
    front-end inside, metadata and provenance included), verified against PyTorch.
    Exit 0 on success, 1 if the checkpoint cannot be read or the export or its verification fails, 2 on usage
    errors."""
    if precision not in PRECISIONS:
        fail(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}", 2)
    if batch not in BATCHES:
        fail(f"--batch must be dynamic or 1, not {batch!r}", 2)
    if window_seconds is not None and not window_seconds > 0:
        fail(f"--window-seconds must be positive, got {window_seconds}", 2)
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        fail(TRAIN_HINT, 1)
    from ..export import ExportError, read_labels_file, to_onnx
    from ..models import CheckpointError

    names = None
    if labels is not None:
        if not labels.is_file():
            fail(f"--labels {labels}: no such file", 2)
        try:
            names = read_labels_file(labels)
        except ExportError as exc:
            fail(f"--labels {exc}", 2)
    typer.echo(printable(f"exporting {checkpoint} -> {output} ({precision}, batch {batch})"), err=True)
    try:
        report = to_onnx(
            str(checkpoint), output, window_seconds=window_seconds, batch=1 if batch == "1" else "dynamic",
            precision=precision, labels=names, verify=verify,
        )
    except KeyboardInterrupt:
        typer.echo("interrupted; nothing was written", err=True)
        raise typer.Exit(130) from None
    except FileNotFoundError:
        fail(f"{checkpoint}: no such checkpoint file or folder", 1)
    except CheckpointError as exc:
        fail(_naming(checkpoint, str(exc)), 1)
    except ExportError as exc:
        fail(str(exc) if str(output) in str(exc) else f"{checkpoint}: {exc}", 1)
    except (RuntimeError, ValueError, TypeError, OSError) as exc:  # the tracer / ONNX tooling on unusual models
        fail(f"{checkpoint}: export failed: {short_error(exc, with_type=True)}", 1)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo("\n".join(printable(line) for line in summary_lines(report)))


def summary_lines(report: ExportReport) -> list[str]:
    """A few lines describing an export: file, shapes and timing, and what verification measured."""
    info: dict[str, Any] = report.to_dict()
    lines = [
        f"wrote {info['path']}: {info['model_type']} {info['precision']}, {info['bytes'] / 1e6:.1f} MB, "
        f"sha256 {info['sha256'][:16]}…",
        f"window {info['window_seconds']:g} s ({info['window_samples']} samples at {info['sample_rate']} Hz), "
        f"{info['steps']} steps of {info['step_seconds']:g} s, {info['classes']} classes, batch {info['batch']}; "
        f"{info['seconds']:g} s",
    ]
    check, fp32 = info["verification"], info["fp32_verification"]
    if check is None:
        lines.append("not verified (--no-verify)")
        return lines
    if fp32 is not None:
        lines.append(f"fp32 graph vs PyTorch: max |Δp| {fp32['max_abs_diff']:.3g} (limit 1e-4)")
    where = f"on {len(check['inputs'])} test signals, batch {' and '.join(map(str, check['batch_sizes']))}"
    lines.append(f"{info['precision']} graph vs PyTorch: max |Δp| {check['max_abs_diff']:.3g} "
                 f"(framewise {check['framewise_max_abs_diff']:.3g}, clipwise {check['clipwise_max_abs_diff']:.3g}) "
                 f"{where}")
    if check["events_match"] is not None:
        events = check.get("events", {})
        lines.append(f"events on a {events.get('scene_seconds', '?')} s test scene: {events.get('events', '?')} vs "
                     f"{events.get('fp32_events', '?')} with fp32, "
                     f"{'they match' if check['events_match'] else 'they DIFFER'} (onsets/offsets within one step)")
    return lines


def _naming(path: Path, message: str) -> str:
    """``message`` prefixed with ``path`` unless it already starts with the file's name."""
    return message if message.startswith(path.name) else f"{path}: {message}"

