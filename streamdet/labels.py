"""Class-label helpers: the AudioSet ontology names shipped with the package."""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

AUDIOSET_NUM_CLASSES = 527


@lru_cache(maxsize=1)
def audioset_labels() -> tuple[str, ...]:
    """The 527 AudioSet display names in class-index order (Google, CC BY 4.0)."""
    text = resources.files("streamdet.data").joinpath("audioset_class_labels_indices.csv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    labels = [""] * len(rows)
    for row in rows:
        labels[int(row["index"])] = row["display_name"]
    if len(labels) != AUDIOSET_NUM_CLASSES:
        raise RuntimeError(f"the bundled AudioSet label file has {len(labels)} rows, expected 527")
    return tuple(labels)


def default_labels(num_classes: int) -> list[str]:
    """AudioSet names for 527-class models, ``class_0..class_{n-1}`` otherwise."""
    if num_classes == AUDIOSET_NUM_CLASSES:
        return list(audioset_labels())
    return [f"class_{i}" for i in range(num_classes)]
