"""``streamdet models [list|show MODEL]``: the bundled models, and what an exported model file says about itself.

Everything is read with ONNX Runtime (no torch) by :func:`streamdet.model_info.model_info`; ``show`` renders it.
Every value that comes from the model file is printed as text, never as rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

from .common import bundled_models, error, fail, resolve_model
from .options import ClassesOption, LabelMapOption, parse_label_map
from .text import plain

app = typer.Typer(
    help="List the bundled models, or show what a model file contains (labels, rates, thresholds, shapes, "
         "provenance).",
    no_args_is_help=False,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _load_info(model: str) -> dict[str, Any]:
    path = resolve_model(model)
    if path is None or not path.is_file():
        names = ", ".join(p.stem for p in bundled_models()) or "none installed"
        fail(f"{model}: no such model file or bundled model (bundled: {names})", 2)
    try:
        from ..model_info import model_info

        return model_info(path)
    except ImportError as exc:
        fail(f"cannot load ONNX Runtime ({exc}); install streamdet with the `cpu` or `gpu` extra", 1)
    except (OSError, RuntimeError) as exc:
        fail(f"{path}: {exc}", 1)


def _size(n: int) -> str:
    """A file size in decimal units (MB = 10^6 bytes), as ``ls --si`` and the export summary print it."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(n)


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def show_command(
    model: str = typer.Argument(..., help="A model file (.onnx) or the name of a bundled model."),
    output_format: str = typer.Option("table", "--format", "-f", help="table or json."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON, the provenance in full "
                                                        "(same as --format json)."),
    classes: ClassesOption = None,
    label_map: LabelMapOption = None,
) -> None:
    """Show what a model file contains: labels, sample rate, window, step, precision, thresholds,
    inputs/outputs with shapes, a summary of the provenance (--json for all of it). With --label-map / --classes,
    also the labels they give on this model, each with its members and settings (exit 2 when they do not fit).
    Exit 1 when it is not a valid streamdet model."""
    if output_format not in ("table", "json"):
        fail(f"--format must be table or json, not {output_format!r}", 2)
    chosen = parse_label_map(label_map)
    info = _load_info(model)
    if info["valid"] and (chosen is not None or classes is not None):
        info["label_map"] = _label_map_info(info, chosen, classes)
    if as_json or output_format == "json":
        sys.stdout.write(_json_text(info) + "\n")
    else:
        _print_info(info)
    if not info["valid"]:
        error(f"{info['path']}: not a valid streamdet model: {info['error']}")
        raise typer.Exit(1)


def _print_info(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    table = Table(show_header=False, title=plain(Path(info["path"]).name), title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")

    def row(name: str, value: Any, style: str = "") -> None:
        table.add_row(name, plain(value, style))  # every value may come from the model file: text, not markup

    row("path", info["path"])
    row("size", f"{_size(info['file_bytes'])}  sha256 {info['sha256'][:16]}…")
    if info["valid"]:
        row("model type", info["model_type"])
        row("labels", f"{len(info['labels'])}: {', '.join(info['labels'])}")
        row("sample rate", f"{info['sample_rate']} Hz")
        row("window", f"{info['window_seconds']:g} s ({info['window_samples']} samples)")
        row("step", f"{info['step_seconds']:g} s ({info['steps_per_window']} steps per window)")
        row("activation", info["output_activation"])
        row("precision", info["precision"])
        pairs = {tuple(v) for v in info["thresholds"].values()}
        if len(pairs) == 1:
            on, off = next(iter(pairs))
            text = f"on {on:g} / off {off:g} for every class"
        else:
            text = ", ".join(f"{k} {v[0]:g}/{v[1]:g}" for k, v in info["thresholds"].items())
        row("thresholds", f"{text} ({info['thresholds_source']})")
        if info["postprocess"]:
            per_class = (f"{k} {v.get('min_duration', 0.0):g}/{v.get('min_gap', 0.0):g}"
                         for k, v in info["postprocess"].items())
            row("post-processing", "min duration / min gap, s: " + ", ".join(per_class))
        if "label_map" in info:
            table.add_row("label map", _lines(
                f"{label} = {' | '.join(g['labels'])}: {g['threshold'][0]:g}/{g['threshold'][1]:g}, "
                f"min duration {g['min_duration']:g} s, min gap {g['min_gap']:g} s"
                for label, g in info["label_map"].items()))
        row("front-end", json.dumps(info["frontend"], sort_keys=True))
    else:
        row("error", info["error"], "red")
    for kind in ("inputs", "outputs"):
        table.add_row(kind, _lines(f"{t['name']}: {t['type']} {t['shape']}" for t in info[kind]))
    if info["producer"] or info["graph"]:
        row("producer", f"{info['producer']} (graph {info['graph']})")
    if info.get("provenance"):
        table.add_row("provenance", _lines(f"{key}: {text}" for key, text in provenance_summary(info["provenance"])))
    console.print(table)


def _label_map_info(info: dict[str, Any], chosen: Any, classes: str | None) -> dict[str, Any]:
    """The label map (and/or ``--classes``) on the model of ``info``, every setting filled in, or exit 2."""
    from ..label_map import resolve_label_map

    thresholds = {label: tuple(pair) for label, pair in info["thresholds"].items()}
    try:
        score_map = resolve_label_map(info["labels"], thresholds, info["postprocess"], chosen, classes)
    except ValueError as exc:
        fail(str(exc), 2)
    assert score_map is not None
    return score_map.describe()


def _lines(lines: Iterable[str]) -> Any:
    """Several untrusted lines as one rich Text: each line escaped on its own, joined by newlines."""
    from rich.text import Text

    return Text("\n").join(plain(line) for line in lines)


SUMMARISED = ("source", "name", "recipe", "stage", "evaluation", "figures", "exported", "checkpoint_sha256")
"""Provenance entries that :func:`provenance_summary` condenses; the others are only named."""
FIGURE_SKIP = ("per_class", "variants", "split")
MAX_FIGURE_LINES = 6


def provenance_summary(provenance: dict[str, Any]) -> list[tuple[str, str]]:
    """A few readable ``(what, text)`` lines from a model's provenance: source checkpoint (name, sha256, format),
    recipe, key evaluation figures, the versions it was exported with, and the names of the other entries."""
    rows: list[tuple[str, str]] = []
    source = provenance.get("source")
    if isinstance(source, dict):
        parts = [str(source.get("file") or "?")]
        parts += [f"sha256 {source['sha256']}"] if source.get("sha256") else []
        parts += [f"format {source['format']}"] if source.get("format") else []
        rows.append(("source", ", ".join(parts)))
    elif source:
        rows.append(("source", str(source)))
    if provenance.get("checkpoint_sha256"):
        rows.append(("checkpoint", f"sha256 {provenance['checkpoint_sha256']}"))
    inner = provenance.get("model_provenance")
    recipe = provenance.get("recipe") or (inner.get("recipe") if isinstance(inner, dict) else None)
    if recipe or provenance.get("name") or provenance.get("stage"):
        extra = [f"{k} {provenance[k]}" for k in ("name", "stage") if provenance.get(k)]
        text = str(recipe) if recipe else ""
        rows.append(("recipe", f"{text} ({', '.join(extra)})" if text and extra else text or ", ".join(extra)))
    for key in ("evaluation", "figures"):
        if isinstance(provenance.get(key), dict):
            lines = _figure_lines(provenance[key])[:MAX_FIGURE_LINES]
            rows += [("figures", line) for line in lines]
            break
    exported = provenance.get("exported")
    if isinstance(exported, dict):
        versions = ", ".join(f"{k} {v}" for k, v in exported.items() if k != "created")
        when = f" on {exported['created']}" if exported.get("created") else ""
        rows.append(("exported with", versions + when))
    others = [k for k in provenance if k not in SUMMARISED]
    if others:
        rows.append(("more", f"{', '.join(others)} (all of it: --json)"))
    return rows


def _figure_lines(figures: dict[str, Any], prefix: str = "", depth: int = 0) -> list[str]:
    """``split: name value, ...`` lines for the numbers of a (nested) figures dict; the test split first."""
    numbers = [f"{k} {_number(v)}" for k, v in figures.items()
               if isinstance(v, int | float) and not isinstance(v, bool)]
    lines = [f"{prefix or 'figures'}: {', '.join(numbers)}"] if numbers else []
    if depth < 2:
        keys = sorted((k for k, v in figures.items() if isinstance(v, dict) and k not in FIGURE_SKIP),
                      key=lambda k: k != "test")
        for key in keys:
            lines += _figure_lines(figures[key], f"{prefix}/{key}" if prefix else key, depth + 1)
    return lines


def _number(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def list_command(
    output_format: str = typer.Option("table", "--format", "-f", help="table or json."),
) -> None:
    """List the models bundled with streamdet (use the name with --model, or `models show NAME`)."""
    if output_format not in ("table", "json"):
        fail(f"--format must be table or json, not {output_format!r}", 2)
    from ..model_info import model_info
    from ..session import BUNDLED_MODEL

    rows = []
    for path in bundled_models():
        try:
            info = model_info(path)
        except (OSError, RuntimeError) as exc:
            info = {"path": str(path), "valid": False, "error": str(exc), "file_bytes": path.stat().st_size}
        info["name"] = path.stem
        info["default"] = path == BUNDLED_MODEL
        rows.append(info)
    if output_format == "json":
        keys = ("name", "default", "path", "valid", "error", "model_type", "labels", "sample_rate",
                "window_seconds", "precision", "file_bytes")
        sys.stdout.write(_json_text([{k: r.get(k) for k in keys} for r in rows]) + "\n")
        return
    if not rows:
        typer.echo(f"no bundled models installed (expected {BUNDLED_MODEL}); pass --model PATH to an exported "
                   f".onnx file", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col, justify in (("name", "left"), ("type", "left"), ("classes", "left"), ("rate", "right"),
                         ("window", "right"), ("precision", "left"), ("size", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        name = plain(r["name"] + (" (default)" if r["default"] else ""))
        if not r["valid"]:
            table.add_row(name, plain("invalid", "red"), plain(r["error"]), "", "", "", _size(r["file_bytes"]))
            continue
        table.add_row(name, plain(r["model_type"]), plain(", ".join(r["labels"])), f"{r['sample_rate']} Hz",
                      f"{r['window_seconds']:g} s", plain(r["precision"]), _size(r["file_bytes"]))
    Console(width=None if sys.stdout.isatty() else 120).print(table)


@app.callback()
def _models(ctx: typer.Context) -> None:
    """List the bundled models (`models list`, the default) or show a model file (`models show MODEL`)."""
    if ctx.invoked_subcommand is None:
        list_command(output_format="table")


app.command("list")(list_command)
app.command("show")(show_command)
