"""``streamdet train --recipe alerts``: reproduce a model end to end (synthesis, training, tuning, export, eval);
``streamdet train --recipe alerts --real DIR --from alerts``: adapt a trained model to the recipe's data
(:mod:`streamdet.train.adapt`); ``streamdet train --from alerts --clips DIR --out my.onnx``: teach a model new
sounds (:mod:`streamdet.train.teach`).

torch and the training code are imported inside the command, so ``streamdet --help`` stays light.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .common import error, fail
from .text import printable

if TYPE_CHECKING:
    from ..train.recipes import Recipe


def train_command(
    recipe: str = typer.Option("alerts", "--recipe", "-r", help="Training recipe (alerts)."),
    quick: bool = typer.Option(False, "--quick", help="The same path at toy size: minutes instead of ~75 min "
                                                      "(for CI; the model is not useful)."),
    out: Path | None = typer.Option(None, "--output", "--out", "-o", help="Output folder (data, features, checkpoints, "
                                                              "model, report). Default: runs/RECIPE[-quick].",
                                    show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted training from OUTPUT/train/last.pt "
                                                        "(synthesised data and features are always reused)."),
    bundle: bool = typer.Option(False, "--bundle", help="Install the final model and example clip into the "
                                                        "package's bundled/ folder (maintainers)."),
    workers: int | None = typer.Option(None, "--workers", help="Synthesis processes. Default: CPU cores.",
                                       show_default=False),
    threads: int | None = typer.Option(None, "--threads", help="torch / ONNX Runtime threads. Default: CPU cores.",
                                       show_default=False),
    device: str = typer.Option("auto", "--device", "-d", help="Training device: auto, cpu, cuda or cuda:N."),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the recipe's number of epochs.",
                                      show_default=False),
    real: Path | None = typer.Option(None, "--real", help="A real-audio corpus (targets/ and backgrounds/ with "
                                                          "MANIFEST.csv): split by source into training recordings "
                                                          "and validation ones (tuning, real-audio figures).",
                                     show_default=False),
    from_: str | None = typer.Option(None, "--from", help="Start from this model: a bundled name (alerts), a "
                                                          "streamdet .onnx (fp32), a training checkpoint or an "
                                                          "official HTS-AT checkpoint. With --clips and --out: teach "
                                                          "it new sounds. Without --clips: adapt it to the recipe's "
                                                          "data (with --real: to real audio), itself as teacher.",
                                     show_default=False),
    clips: Path | None = typer.Option(None, "--clips", help="With --from: LABEL/ folders of recordings (at least 5 "
                                                            "each; optional LABEL/*.tsv strong labels) and an "
                                                            "optional background/ folder.", show_default=False),
    replace: bool = typer.Option(False, "--replace", help="With --from: a label the model already has is trained "
                                                          "anew from the clips."),
    seed: int = typer.Option(0, "--seed", help="With --from: the seed of the split and the scenes."),
    scenes: int = typer.Option(120, "--scenes", help="With --from: training scenes per new label (10 s each; "
                                                     "rehearsal scenes of the old classes: two thirds as many)."),
) -> None:
    """Train a model with a recipe, end to end.

    Synthesise scenes, train, tune per-class thresholds on the validation split, export ONNX with provenance,
    evaluate on the held-out test split through the runtime engine. Exit 0 on success, 1 if a stage fails,
    2 on usage errors."""
    if clips is not None:
        _teach(from_, clips, out, replace, seed, scenes, threads, workers)
        return
    if real is not None and not (real / "targets" / "MANIFEST.csv").is_file():
        fail(f"--real {real}: not a real-audio corpus (expected targets/MANIFEST.csv and backgrounds/MANIFEST.csv)", 2)
    for name, value in (("--workers", workers), ("--threads", threads), ("--epochs", epochs)):
        if value is not None and value < 1:
            fail(f"{name} must be at least 1, got {value}", 2)
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("training needs torch: pip install 'streamdet[train]' (install torch first for the CPU wheel)", 1)
    import dataclasses

    from rich.console import Console

    from ..train.recipes import get_recipe, run_recipe

    try:
        spec = get_recipe(recipe, quick=quick)
    except ValueError as exc:
        fail(str(exc), 2)
    if from_ is not None:
        if out is not None and out.suffix.lower() == ".onnx":  # the teaching form with --clips forgotten
            fail(f"--out {out}: teaching new sounds needs --clips DIR (and writes NEW.onnx); adapting a model with "
                 "--recipe writes a run folder, not an .onnx file", 2)
        _check_start(from_, spec)
    if epochs is not None and from_ is not None and spec.adapt is not None:
        spec = dataclasses.replace(spec, adapt=dataclasses.replace(spec.adapt, epochs=epochs))
    elif epochs is not None:
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=epochs))
    out = out or Path("runs") / f"{recipe}{'-quick' if quick else ''}"
    bundle_dir = Path(__file__).resolve().parent.parent / "bundled" if bundle else None
    console = Console(stderr=True)
    try:
        report = run_recipe(spec, out, resume=resume, workers=workers, threads=threads, device=device,
                            real=real, start=from_, bundle_dir=bundle_dir, console=console)
    except KeyboardInterrupt:
        console.print(printable(f"interrupted; continue with: streamdet train --recipe {recipe}"
                                f"{' --quick' if quick else ''}{f' --real {real}' if real else ''}"
                                f"{f' --from {from_}' if from_ else ''} --output {out} --resume"), markup=False)
        raise typer.Exit(130) from None
    except (RuntimeError, ValueError, OSError) as exc:
        fail(f"{type(exc).__name__}: {exc}", 1)
    test = report["figures"]["test"]
    typer.echo(printable(
        f"{report['model']}: held-out test event F1 (macro, 200 ms) {test['event_f1_macro']}, "
        f"segment F1 (macro, 1 s) {test['segment_f1_macro']}; report: {out / 'report.json'}"
    ))
    if "real" in report["figures"]:
        sc, bg = report["figures"]["real"]["scenes"], report["figures"]["real"]["backgrounds"]["overall"]
        typer.echo(f"real audio (validation sources): event F1 (macro) {sc['event_f1_macro']}, segment F1 (macro) "
                   f"{sc['segment_f1_macro']}; {bg['false_alarms_per_minute']} false alarms per minute on real "
                   "backgrounds")


def _check_start(source: str, spec: Recipe) -> None:
    """Exit 2 at once (not after minutes of synthesis) when ``--from`` names no usable model for the recipe: the
    recipe's own check (:func:`streamdet.train.adapt.check_start_model`), run before any work."""
    from ..train.adapt import check_start_model
    from ..train.teach import load_source

    if spec.adapt is None:
        fail(f"--from: recipe {spec.name} has no adaptation settings", 2)
    try:
        model, info = load_source(source)
        check_start_model(model, info, spec.labels, spec.window_seconds, spec.build_model())
    except ValueError as exc:
        fail(str(exc), 2)


def _teach(source: str | None, clips: Path | None, out: Path | None, replace: bool, seed: int, scenes: int,
           threads: int | None, workers: int | None) -> None:
    """``train --from SRC --clips DIR --out my.onnx``: the new model, its report on stdout."""
    if source is None or clips is None or out is None:
        fail("teaching new sounds needs --from MODEL, --clips DIR and --out NEW.onnx", 2)
    for name, value in (("--workers", workers), ("--threads", threads), ("--scenes", scenes)):
        if value is not None and value < 1:
            fail(f"{name} must be at least 1, got {value}", 2)
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("training needs torch: pip install 'streamdet[train]' (install torch first for the CPU wheel)", 1)
    from rich.console import Console

    from ..train.teach import TeachConfig, TeachError, report_rows, teach

    console = Console(stderr=True)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        console.print(printable(f"[{time.perf_counter() - t0:5.0f} s] {msg}"), markup=False, highlight=False)

    try:
        config = TeachConfig(seed=seed, scenes_per_label=scenes, rehearsal_scenes=max(1, 2 * scenes // 3))
        report = teach(source, clips, out, replace=replace, config=config, threads=threads, workers=workers, log=log)
    except TeachError as exc:
        for line in str(exc).splitlines():
            error(line)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (RuntimeError, ValueError, OSError) as exc:
        fail(f"{type(exc).__name__}: {exc}", 1)
    header = ["class", "", "val. events", "event F1 before", "after", "segment F1 before", "after"]
    rows = [header, *report_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    typer.echo(printable(f"{report['model']}: {len(report['labels'])} classes ({len(report['new_labels'])} new); "
                         f"validation scenes of held-out recordings ({report['validation_scenes']}), the source "
                         "model before and the new one after:"), err=False)
    for r in rows:
        typer.echo(printable("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()))
    report_path = Path(report["model"]).with_suffix(".report.json")
    typer.echo(printable(f"old classes' scores differ from the source model's by at most "
                         f"{report['old_scores_max_abs_diff']:.1e}; {report['timings']['total_s']:.0f} s in all; "
                         f"report: {report_path}"))
