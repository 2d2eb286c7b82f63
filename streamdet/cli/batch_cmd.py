"""``streamdet batch INPUT... --output DIR``: detection over archives, in this process or on a Ray cluster.

The inputs (files, folders, glob patterns, list files, URIs: :mod:`streamdet.scale.inputs`) are detected with
the detection options of ``streamdet file`` and the same per-file logic (:mod:`streamdet.scale.runtime`); the
events and one status row per input go into DIR (:mod:`streamdet.scale.parts`), whichever engine ran:
in-process worker threads (no ``--ray``) or Ray Data actors (``--ray local`` starts a cluster on this machine,
``--ray ADDRESS`` joins one; the ``ray`` extra). A bad input is an error row, never a failed run; ``--resume``
skips inputs already done. Progress on stderr. Exit 0 when every input was detected, 1 when some failed (each
named on stderr and in ``files.jsonl``), 2 on usage errors, 130 on Ctrl-C (``--resume`` continues).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from .common import connect_ray, error, fail, load_detector, model_line
from .options import DeviceOption, ModelOption, with_detection_options
from .text import printable

BATCH_FORMATS = ("jsonl", "parquet", "tsv")


@with_detection_options
def batch_command(
    inputs: list[str] = typer.Argument(..., help="Audio files, folders (recursive), glob patterns, list files "
                                                 "(.txt/.lst/.list: one input per line) or URIs (s3://, gs://, ...).",
                                       show_default=False, metavar="INPUT..."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder: events/ and files.jsonl.",
                                show_default=False),
    model: ModelOption = None,
    ray_address: str | None = typer.Option(None, "--ray", help="Run on Ray: 'local' starts a cluster on this "
                                           "machine, else the address of a running one (auto, HOST:PORT, "
                                           "ray://HOST:10001). Default: in this process.", show_default=False),
    output_format: str = typer.Option("jsonl", "--format", "-f", help="Events as jsonl, parquet or tsv (DCASE)."),
    workers: int | None = typer.Option(None, "--workers", help="Detectors working at once (each loads the model "
                                       "once). Default: 1 in-process; on Ray, the cluster's CPUs / threads per "
                                       "worker.", show_default=False),
    threads_per_worker: int | None = typer.Option(None, "--threads-per-worker", help="CPU threads of each "
                                                  "worker's inference (--threads means the same). Default: 1 on "
                                                  "Ray; every core / workers in-process.", show_default=False),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="GPUs each Ray worker reserves (with "
                                          "--device cuda and onnxruntime-gpu; 0.5: two workers share one)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an earlier run into the same folder: inputs "
                                "already detected (same path, size and modification time) are skipped."),
    device: DeviceOption = "auto",
    *,
    settings: dict[str, Any],
) -> None:
    """Detect sound events in an archive of recordings, in this process or on a Ray cluster.

    Writes DIR/events/part-*.{jsonl,parquet,tsv} and DIR/files.jsonl (one status row per input). Exit 0 when
    every input was detected, 1 when some failed, 2 on usage errors, 130 on Ctrl-C."""
    from ..extras import ExtraMissingError
    from ..scale.inputs import expand_inputs
    from ..scale.parts import OutputExistsError, OutputFolder

    output_format = output_format.lower()
    if output_format not in BATCH_FORMATS:
        fail(f"--format must be one of {', '.join(BATCH_FORMATS)}, not {output_format!r}", 2)
    threads = threads_per_worker or settings["threads"]
    for name, value in (("--workers", workers), ("--threads-per-worker", threads)):
        if value is not None and value < 1:
            fail(f"{name} must be at least 1, got {value}", 2)
    if not 0 <= gpus_per_worker <= 64:
        fail(f"--gpus-per-worker must be from 0 to 64, got {gpus_per_worker}", 2)
    if gpus_per_worker and ray_address is None:
        fail("--gpus-per-worker needs --ray (in-process, --device cuda uses the GPU)", 2)
    if output_format == "parquet":
        _require("pyarrow", "--format parquet")
    try:
        items = expand_inputs(inputs)
    except ExtraMissingError as exc:
        fail(str(exc), 2)
    folder = OutputFolder(output, output_format)
    try:
        done = folder.prepare(resume)
    except OutputExistsError as exc:
        fail(str(exc), 2)
    except OSError as exc:
        fail(f"--output {output}: {exc.strerror or exc}", 2)

    if ray_address is None:
        from ..session import usable_cores

        workers = workers or 1
        threads = threads or max(1, usable_cores() // workers)
    det = load_detector(model, device, {**settings, "threads": threads or 1})
    typer.echo(model_line(det), err=True)
    todo = [i for i in items if not _already_done(i, done.get(i.path))]
    folder.forget({i.path for i in todo if i.path in done})  # changed or failed before: their old rows go
    if resume:
        typer.echo(f"resume: {len(items) - len(todo)} of {len(items)} input(s) already done", err=True)
    todo.sort(key=lambda i: (i.problem is None, i.size or 0), reverse=True)  # longest first; problems last
    t0 = time.perf_counter()
    try:
        job = _run(todo, folder, ray_address, workers, threads, gpus_per_worker, model, device, settings, det)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the parts written so far are kept in {printable(output)}; run again with "
                   "--resume to continue", err=True)
        raise typer.Exit(130) from None
    rows = folder.finish(items)
    _summary(rows, job, time.perf_counter() - t0, output)


def _require(module: str, what: str) -> None:
    from ..extras import ExtraMissingError, import_extra

    try:
        import_extra(module, "ray", what)
    except ExtraMissingError as exc:
        fail(str(exc), 2)


def _already_done(item: Any, row: dict[str, Any] | None) -> bool:
    """An input ``--resume`` skips: detected before (status ok) with the same size and modification time."""
    return (row is not None and row.get("status") == "ok" and item.problem is None
            and (row.get("size"), row.get("mtime")) == (item.size, item.mtime))


def _run(todo: list, folder: Any, ray_address: str | None, workers: int | None, threads: int | None,
         gpus: float, model: str | None, device: str, settings: dict[str, Any], det: Any) -> Any:
    """Run the inputs on the chosen engine; returns the finished job."""
    from ..scale.local import BatchJob, part_files, run_local
    from ..scale.progress import Progress, header_seconds

    if ray_address is None:
        assert workers is not None and threads is not None

        def make_detector(index: int) -> Any:
            return det if index == 0 else load_detector(model, device, {**settings, "threads": threads})

        job = BatchJob(todo, folder, workers, part_files(len(todo), workers),
                       Progress(len(todo), header_seconds(todo)))
        typer.echo(f"batch: {len(todo)} input(s), in this process: {workers} worker(s) x {threads} thread(s)",
                   err=True)
        run_local(job, make_detector)
        job.progress.finish()
        return job
    return _run_ray(todo, folder, ray_address, workers, threads or 1, gpus, device, settings, det)


def _run_ray(todo: list, folder: Any, address: str, workers: int | None, threads: int, gpus: float, device: str,
             settings: dict[str, Any], det: Any) -> Any:
    from ..scale.cluster import cluster_cpus
    from ..scale.local import BatchJob, part_files
    from ..scale.progress import Progress, header_seconds
    from ..scale.runtime import DetectorSpec

    ray = connect_ray(address, "streamdet batch --ray")
    try:
        from ..scale.ray_batch import run_ray

        workers = workers or max(1, cluster_cpus(ray) // threads)
        spec = DetectorSpec.from_path(det.session.path, device, {**settings, "threads": threads})
        job = BatchJob(todo, folder, workers, part_files(len(todo), workers),
                       Progress(len(todo), header_seconds(todo)))
        typer.echo(f"batch: {len(todo)} input(s) on Ray ({cluster_cpus(ray)} CPUs): {workers} worker(s) x "
                   f"{threads} thread(s)", err=True)
        if todo:
            run_ray(job, spec, threads, gpus)
        job.progress.finish()
        return job
    finally:
        ray.shutdown()


def _summary(rows: list[dict[str, Any]], job: Any, elapsed: float, output: Path) -> None:
    bad = [r for r in rows if r.get("status") != "ok"]
    for row in bad:
        error(f"{row['file']}: {row.get('reason')}")
    audio = job.progress.audio
    events = sum(r.get("events") or 0 for r in rows)
    typer.echo(printable(f"{len(rows) - len(bad)} file(s) ok, {len(bad)} failed; {events} event(s); "
                         f"{audio / 3600:.2f} h of audio detected in {elapsed:.1f} s (x{audio / max(elapsed, 1e-9):.0f}"
                         f" real time); results in {output}"), err=True)
    if bad:
        raise typer.Exit(1)

