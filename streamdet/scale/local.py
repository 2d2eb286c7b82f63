"""The in-process engine of ``streamdet batch`` (no ``--ray``): worker threads in this process, each with its own
Detector, running :func:`~.runtime.detect_one` and writing parts through :class:`~.parts.OutputFolder`, the
same per-file logic and the same writer the Ray engine uses, so the output does not depend on the engine."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .parts import OutputFolder
from .progress import Progress
from .runtime import FileResult, InputFile, detect_one

if TYPE_CHECKING:
    from ..detector import Detector

MAX_PART_FILES = 64


def part_files(inputs: int, workers: int) -> int:
    """Files per output part: about eight parts per worker (steady progress, little lost on an interruption),
    from 1 to :data:`MAX_PART_FILES` files."""
    return max(1, min(MAX_PART_FILES, inputs // max(1, workers * 8)))


@dataclass
class BatchJob:
    """One run: the inputs still to do (longest first, so the workers finish together), the output folder, how
    many workers and files per part, and the progress to report to."""

    items: list[InputFile]
    folder: OutputFolder
    workers: int
    part_files: int
    progress: Progress


def run_local(job: BatchJob, make_detector: Callable[[int], Detector]) -> None:
    """Run ``job`` on ``job.workers`` threads; ``make_detector(i)`` gives worker ``i`` its Detector."""
    todo: queue.SimpleQueue[InputFile | None] = queue.SimpleQueue()
    for item in job.items:
        todo.put(item)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            det = make_detector(index)
            buffer: list[FileResult] = []
            while (item := _next(todo)) is not None:
                result = detect_one(det, item)
                buffer.append(result)
                if len(buffer) >= job.part_files:
                    job.folder.write_part(buffer)
                    buffer = []
                job.progress.add([result.status])
            if buffer:
                job.folder.write_part(buffer)
        except BaseException as exc:  # a worker that cannot run (its model, the disk): the run fails, named
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), name=f"batch-{i}", daemon=True)
               for i in range(max(1, min(job.workers, len(job.items))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _next(todo: queue.SimpleQueue[InputFile | None]) -> InputFile | None:
    try:
        return todo.get_nowait()
    except queue.Empty:
        return None
