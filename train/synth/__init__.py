"""Procedural sound generators, acoustic effects and the strong-label scene synthesiser.

numpy/scipy only (no torch), so synthesis is fast and can run in worker processes.
"""

from .core import DEFAULT_SAMPLE_RATE, Sound
from .registry import ALERTS_LABELS, EVENT_GENERATORS, HELDOUT_PARAMS, generate_event
from .scenes import (
    ClipLibrary,
    Scene,
    SceneConfig,
    SceneEvent,
    synthesize_scene,
    synthesize_split,
    write_tsv,
)

__all__ = [
    "ALERTS_LABELS",
    "DEFAULT_SAMPLE_RATE",
    "EVENT_GENERATORS",
    "HELDOUT_PARAMS",
    "ClipLibrary",
    "Scene",
    "SceneConfig",
    "SceneEvent",
    "Sound",
    "generate_event",
    "synthesize_scene",
    "synthesize_split",
    "write_tsv",
]
