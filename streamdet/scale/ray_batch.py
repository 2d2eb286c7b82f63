"""The Ray Data engine of ``streamdet batch --ray``: a dataset of inputs → ``map_batches`` with :class:`FileWorker`
(a callable class: one Detector per actor, the model loaded once per actor) → :class:`PartSink`, a Ray Data
datasink that writes the output parts.

Each actor runs :func:`~.runtime.detect_one` (the per-file logic of the in-process engine: the file is decoded
inside the actor block by block, never loaded whole) one input at a time, and the write tasks call the same
:meth:`~.parts.OutputFolder.write_part`, so both engines write the same layout. Inputs and results travel as
JSON strings (file names may hold any bytes; Arrow strings may not). The write tasks run on the driver's node
(``supports_distributed_writes`` is False): the output folder is a local folder of the machine running
``streamdet batch``, whichever nodes the actors run on.

Importing this module imports Ray (the ``ray`` extra); ``streamdet batch`` imports it only with ``--ray``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Iterable
from typing import Any

import numpy as np
import ray
from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from .local import BatchJob
from .parts import OutputFolder
from .progress import PartWatcher
from .runtime import DetectorSpec, FileResult, InputFile, detect_one


class FileWorker:
    """A Ray Data actor: builds its Detector once, then detects one input per call."""

    def __init__(self, spec: DetectorSpec, model: list[Any], threads: int) -> None:
        # the model's bytes come through the object store once per node (a reference inside a list: Ray passes
        # it as is, and the actor's own arguments stay small)
        spec = dataclasses.replace(spec, model_bytes=ray.get(model[0]))
        self.detector, self._model_folder = spec.build(threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"item": JSON inputs}`` → ``{"result": JSON {"status", "events"}}``."""
        results = []
        for text in batch["item"]:
            result = detect_one(self.detector, InputFile(**json.loads(text)))
            results.append(json.dumps({"status": result.status, "events": result.events}))
        return {"result": np.array(results, dtype=object)}

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_model_folder", ""), ignore_errors=True)


class PartSink(Datasink[int]):
    """Writes the results of each write task as one part of the output folder (events, then status rows)."""

    def __init__(self, folder: OutputFolder, rows_per_part: int) -> None:
        self.folder = folder
        self.rows_per_part = rows_per_part

    def write(self, blocks: Iterable[Block], ctx: Any) -> int:
        """Write the blocks' results as one part; returns the number of inputs written."""
        results = []
        for block in blocks:
            for text in BlockAccessor.for_block(block).to_arrow().column("result").to_pylist():
                row = json.loads(text)
                results.append(FileResult(row["status"], row["events"]))
        if results:
            self.folder.write_part(results)
        return len(results)

    @property
    def supports_distributed_writes(self) -> bool:
        """False: the parts are written on the driver's node, into its local output folder."""
        return False

    @property
    def min_rows_per_write(self) -> int:
        """Inputs per part (:func:`~.local.part_files`)."""
        return self.rows_per_part


def quiet_data_context() -> None:
    """No Ray Data progress bars or execution banners: ``streamdet batch`` prints its own progress."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.verbose_stats_logs = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # set by ray.data's import: its banners are not output


def run_ray(job: BatchJob, spec: DetectorSpec, threads: int, num_gpus: float = 0.0) -> None:
    """Run ``job`` on the connected Ray cluster: ``job.workers`` actors of ``threads`` CPUs (and ``num_gpus``)."""
    quiet_data_context()
    items = [{"item": json.dumps(item.to_dict())} for item in job.items]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    model = [ray.put(spec.model_bytes)]
    spec = dataclasses.replace(spec, model_bytes=b"")
    results = dataset.map_batches(FileWorker, fn_constructor_args=(spec, model, threads), batch_size=1,
                                  compute=ray.data.ActorPoolStrategy(size=job.workers), num_cpus=threads,
                                  num_gpus=num_gpus or None, batch_format="numpy")
    with PartWatcher(job.folder.status_dir, job.progress):
        results.write_datasink(PartSink(job.folder, job.part_files), ray_remote_args={"num_cpus": 0})
