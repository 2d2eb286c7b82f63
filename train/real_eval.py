"""The real-audio benchmark: a model through the runtime engine on real recordings it did not train on.

Three measurements, all on the validation side of :func:`streamdet.train.real.split_by_source` (sources that
never reach training):

* **scenes** - validation target recordings (real alarms, sirens, ringtones, a horn, speech) placed at known
  times into validation background recordings (music, street, crowd, weather, household, ...) with validation
  distractors, at realistic levels and rooms, synthesised with the scene generator (``procedural=False``: no
  generated sound in them). Scored like every figure of the project: event-based F1 (200 ms collar) and
  segment-based F1 (1 s) per class, macro over the classes that have real validation events, with the number of
  events and of distinct recordings each class's figure rests on.
* **backgrounds** - every validation background recording alone, as a file: false alarms per minute and the
  share of time flagged, per background kind and overall, and which labels fired.
* **steady** - digital silence and steady noises (white, pink, brown, mains hum) at three levels: no event may
  fire on them.

:func:`evaluate_real` runs all three for an ONNX model with its own post-processing (the model's thresholds and
``postprocess`` metadata) at the engine's defaults; ``benchmarks/real_audio.py`` and the training recipe call it.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .real import RealClip, link_split, read_corpus, split_by_source

__all__ = [
    "REAL_SPLIT_SEED",
    "background_false_alarms",
    "evaluate_real",
    "prepare_real",
    "real_scene_config",
    "scene_figures",
    "steady_noise_false_alarms",
]

REAL_SPLIT_SEED = 0  # the split of the corpus by source (train/real.py); fixed for the project
STEADY_LEVELS_DBFS = (-50.0, -30.0, -15.0)


def real_scene_config(clips_dir: str | Path, beds_dir: str | Path, labels: Sequence[str], **overrides: Any) -> Any:
    """Scenes of real recordings only: targets and distractors from ``clips_dir``, beds from ``beds_dir``.

    Realistic levels: targets 0-20 dB above the background over their active samples (a voice or an alarm over a
    TV or a street), distractors -5..15 dB, a room on 60 % of sources, device colouration on 15 %.
    """
    from .synth import SceneConfig

    base: dict[str, Any] = {
        "labels": tuple(labels),
        "procedural": False,
        "clip_folders": (str(clips_dir),),
        "background_folders": (str(beds_dir),),
        "background_folder_prob": 1.0,
        "backgrounds": (1, 1),
        "events": (1, 3),
        "snr_db": (0.0, 20.0),
        "distractors": (0, 2),
        "truncate_prob": 0.0,
    }
    base.update(overrides)
    return SceneConfig(**base)


def prepare_real(root: str | Path, out_dir: str | Path, labels: Sequence[str], seed: int = REAL_SPLIT_SEED
                 ) -> dict[str, Any]:
    """Split the corpus at ``root`` by source and lay both sides out under ``out_dir/{train,val}``.

    Returns ``{"clips": [...], "split": {"train": [...], "val": [...]}, "dirs": {side: {"clips", "beds"}}}``.
    """
    clips = read_corpus(root)
    split = split_by_source(clips, seed=seed)
    dirs = {side: link_split(split[side], Path(out_dir) / side, labels) for side in ("train", "val")}
    return {"clips": clips, "split": split, "dirs": dirs}


def _flagged_seconds(events: Sequence[Any], duration: float) -> float:
    spans = sorted((max(0.0, e.onset), min(duration, e.offset if e.offset is not None else duration))
                   for e in events)
    total, end = 0.0, -math.inf
    for a, b in spans:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def background_false_alarms(detector: Any, clips: Sequence[RealClip]) -> dict[str, Any]:
    """Events of ``detector`` on each background recording alone: per kind and overall, false alarms per minute,
    share of time flagged and the labels that fired (``{label: count}``)."""
    kinds: dict[str, dict[str, Any]] = defaultdict(lambda: {"clips": 0, "seconds": 0.0, "events": 0,
                                                             "flagged_seconds": 0.0, "labels": Counter()})
    worst: list[tuple[int, str]] = []
    for c in clips:
        events = detector.detect_file(c.path)
        row = kinds[c.kind]
        row["clips"] += 1
        row["seconds"] += c.duration
        row["events"] += len(events)
        row["flagged_seconds"] += _flagged_seconds(events, c.duration)
        row["labels"].update(e.label for e in events)
        if events:
            worst.append((len(events), f"{c.kind}/{c.path.name}"))
    total = {"clips": 0, "seconds": 0.0, "events": 0, "flagged_seconds": 0.0, "labels": Counter()}
    for row in kinds.values():
        for k in ("clips", "seconds", "events", "flagged_seconds"):
            total[k] += row[k]
        total["labels"].update(row["labels"])

    def finish(row: dict[str, Any]) -> dict[str, Any]:
        minutes = row["seconds"] / 60
        return {"clips": row["clips"], "minutes": round(minutes, 2), "events": row["events"],
                "false_alarms_per_minute": round(row["events"] / minutes, 2) if minutes else None,
                "flagged_share": round(row["flagged_seconds"] / row["seconds"], 4) if row["seconds"] else None,
                "labels": dict(sorted(row["labels"].items()))}

    return {"overall": finish(total), "per_kind": {k: finish(kinds[k]) for k in sorted(kinds)},
            "most_events": [name for _, name in sorted(worst, reverse=True)[:10]]}


def _steady_signal(kind: str, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of silence, or the synthesiser's white, pink or brown noise or mains hum."""
    from .synth.backgrounds import hum, noise

    if kind == "silence":
        return np.zeros(n)
    seconds = n / sample_rate
    if kind == "hum":
        return hum(rng, sample_rate, seconds)[:n]
    return noise(rng, sample_rate, seconds, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])[:n]


def steady_noise_false_alarms(detector: Any, seconds: float = 30.0, seed: int = 0) -> dict[str, Any]:
    """Events on digital silence and on steady white, pink and brown noise and mains hum, each at
    :data:`STEADY_LEVELS_DBFS` RMS for ``seconds``: ``{"events": total, "per_signal": {name: events}}``."""
    rng = np.random.default_rng(seed)
    sr = detector.sample_rate
    n = round(seconds * sr)
    per: dict[str, int] = {}
    for kind in ("silence", "white", "pink", "brown", "hum"):
        x = _steady_signal(kind, n, sr, rng)
        levels = (None,) if kind == "silence" else STEADY_LEVELS_DBFS
        for level in levels:
            y = x if level is None else x / (np.sqrt(np.mean(x**2)) + 1e-12) * 10 ** (level / 20)
            stream = detector.stream(sample_rate=sr, name=kind)
            stream.push(np.clip(y, -1, 1).astype(np.float32))
            stream.close()
            per[kind if level is None else f"{kind} {level:g} dBFS"] = len(stream.events)
    return {"events": sum(per.values()), "seconds_each": seconds, "per_signal": per}


def scene_figures(
    detector: Any, split_dir: str | Path, labels: Sequence[str]
) -> dict[str, Any]:
    """Event and segment F1 of ``detector`` on a synthesised split of real scenes (per class, and macro over the
    classes with events in it), with the events and distinct recordings behind each class."""
    from .datasets import read_scenes
    from .loop import ground_truth, score_events

    records = read_scenes(split_dir)
    gt, durations = ground_truth(records, labels)
    pred = {r.path.name: detector.detect_file(r.path, name=r.path.name) for r in records}
    scored = score_events(pred, gt, durations, labels)
    manifest = json.loads((Path(split_dir) / "manifest.json").read_text())
    recordings: dict[str, set[str]] = defaultdict(set)
    for scene in manifest["scenes"]:
        for fg in scene["foreground"]:
            recordings[fg["label"]].add(Path(fg.get("path", "?")).name)
    n_events = Counter(e.label for evs in gt.values() for e in evs)
    present = [c for c in labels if n_events[c] > 0]

    def macro(key: str) -> float | None:
        vals = [scored["per_class"][c][key] for c in present if scored["per_class"][c][key] is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    per_class = {c: {**scored["per_class"][c], "events": n_events[c], "recordings": len(recordings[c])}
                 for c in labels}
    return {"scenes": len(records), "minutes": round(sum(durations.values()) / 60, 2), "classes": present,
            "event_f1_macro": macro("event_f1"), "segment_f1_macro": macro("segment_f1"),
            "event_f1_micro": scored["event_f1_micro"], "segment_f1_micro": scored["segment_f1_micro"],
            "per_class": per_class}


def evaluate_real(
    model: str | Path,
    real_root: str | Path,
    work_dir: str | Path,
    *,
    n_scenes: int = 150,
    scene_seed: int = 101,
    hop: float = 0.5,
    lookahead: float = 0.0,
    threads: int | None = None,
    workers: int = 1,
    prepared: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The real-audio benchmark of an ONNX ``model`` (see the module docstring); scenes are synthesised into
    ``work_dir/scenes_{seed}`` (reused when they match, as the recipe's splits are). Returns a JSON-able report."""
    import streamdet

    from .recipes import _Log, _synth

    det = streamdet.Detector(model, device="cpu", hop=hop, lookahead=lookahead, threads=threads)
    labels = det.labels
    work = Path(work_dir)
    prepared = prepared or prepare_real(real_root, work / "corpus", labels)
    val_dirs = prepared["dirs"]["val"]
    scenes_dir = work / f"scenes_{scene_seed}"
    config = real_scene_config(val_dirs["clips"], val_dirs["beds"], labels)
    _synth(scenes_dir, n_scenes, scene_seed, config, workers, _Log(None), "real scenes")
    val_backgrounds = [c for c in prepared["split"]["val"] if c.part == "backgrounds"]
    return {
        "model": str(model),
        "engine": {"hop": hop, "lookahead": lookahead, "postprocess": "the model's own (thresholds, postprocess)"},
        "split": {"seed": REAL_SPLIT_SEED, "rule": "by source (speech: by speaker); validation side only",
                  "validation_sources": sorted({c.group for c in prepared["split"]["val"]})},
        "scenes": {**scene_figures(det, scenes_dir, labels), "seed": scene_seed},
        "backgrounds": background_false_alarms(det, val_backgrounds),
        "steady": steady_noise_false_alarms(det),
    }

