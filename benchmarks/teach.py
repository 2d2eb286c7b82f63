"""Teach the bundled model a new class from 10 real recordings and measure it (issue #22's targets).

1. **data** (from the real corpus, ``../shared/data/sounds``), per ``--task`` (``TASKS``): ``birds``: 10 training
   recordings from two sources (widelands: 6 bird calls; megaglest: owl, rooster, hawk, a birdsong ambience); the
   *held-out* bird recordings come from three other sources (0ad, lincity, blanket: 8 recordings: flamingo,
   peacock, gull and birdsong ambiences, park chirps). ``animal``: 10 animal calls of widelands and megaglest; held
   out, 9 calls of 0ad and lincity. ``background/`` of the clips folder: the training side of the corpus's split
   by source (household, kitchen, street, weather, crowd, music, hard negatives; no source of a held-out recording).
2. **teach** - ``streamdet.train.teach.teach("alerts", clips, out)``, the code of ``streamdet train --from alerts
   --clips DIR --out birds.onnx``, timed, with the load average of the (shared) machine before and after.
3. **new class, held out** - scenes of the held-out bird recordings placed into held-out real backgrounds (the
   validation side of the corpus split: household, weather, street, crowd, music; no birds or other animals in
   them) with held-out real hard negatives as distractors (``real_scene_config``: 0..20 dB, rooms, devices);
   event F1 (200 ms collar) and segment F1 of ``birds`` through the engine; and the ``birds`` false alarms on those
   backgrounds alone.
4. **old classes** - the source and the new model on the held-out synthetic test (``SceneConfig.heldout``, the
   recipe's test seed) and on the real-audio benchmark (``streamdet.train.real_eval.evaluate_real``), macro event
   F1 over the old classes.

    python benchmarks/teach.py [--task birds|animal] [--last-stage] [--place-distractors] --json runs/teach/report.json

(Figures: benchmarks/RESULTS.md, "Teaching a new class".)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamdet.train.loop import ground_truth, score_events
from streamdet.train.real import read_corpus, split_by_source
from streamdet.train.real_eval import (
    REAL_SPLIT_SEED,
    background_false_alarms,
    evaluate_real,
    prepare_real,
    real_scene_config,
    scene_figures,
)
from streamdet.train.teach import TeachConfig, report_rows, teach

import streamdet
from streamdet.session import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "sounds"
REAL_SCENE_SEED = 101  # the real-audio benchmark's default scene seed (benchmarks/real_audio.py)


@dataclass(frozen=True)
class Task:
    """A new class to teach: its label, the corpus kind its recordings come from, the 10 training recordings (two
    sources) and the held-out ones (other sources)."""

    label: str
    kind: str
    train: tuple[str, ...]
    heldout_prefixes: tuple[str, ...]
    heldout_excluded: tuple[str, ...] = ()  # held-out-source recordings that are not this class's kind of sound


TASKS = {
    # Birds: calls and birdsong ambiences. Five of the eight held-out recordings are ambiences (a 4-30 s recording is
    # one event from its first to its last active sample), which event F1 with a 200 ms collar scores as one event.
    "birds": Task("birds", "birds",
                  ("widelands__bird1_00", "widelands__bird2_00", "widelands__bird3_00", "widelands__bird4_00",
                   "widelands__bird5_00", "widelands__bird6_00", "megaglest__autumn-owl", "megaglest__autumn-rooster",
                   "megaglest__desert2-hawk", "megaglest__desert2-day"),
                  ("0ad__", "lincity__", "blanket__")),
    # Animal calls (farm and wild): discrete calls; the held-out side keeps the calls of two other sources and leaves
    # out their long farm ambiences and the insects (chirping beds, not calls).
    "animal": Task("animal", "other_animals",
                   ("widelands__donkey", "widelands__farm_animal_00", "widelands__horse_00", "widelands__ox_00",
                    "widelands__sheep_00", "widelands__boar", "widelands__stag_00", "widelands__wolf_00",
                    "megaglest__pine_peat-mudchute_cow_1", "megaglest__birch_forest-chicken"),
                   ("0ad__", "lincity__"), ("0ad__amb_farm_10", "0ad__amb_farm_12")),
}
LABEL = "birds"  # the task of this run (set by --task)
TRAIN_BACKGROUND_KINDS = ("household", "kitchen", "street", "weather", "crowd", "music", "hard_negatives")
EVAL_BED_KINDS = ("household", "weather", "street", "crowd", "music")


def prepare(corpus: Path, work: Path) -> dict[str, Any]:
    """The clips folder for teaching and the held-out evaluation folders, as symbolic links under ``work``."""
    clips = read_corpus(corpus)
    split = split_by_source(clips, seed=REAL_SPLIT_SEED)
    task = TASKS[LABEL]
    of_kind = [c for c in clips if c.kind == task.kind]
    train = [c for c in of_kind if c.path.stem in task.train]
    heldout = [c for c in of_kind if c.path.name.startswith(task.heldout_prefixes)
               and c.path.stem not in task.heldout_excluded]
    heldout_sources = {c.source for c in heldout}
    assert len(train) == len(task.train) and not {c.source for c in train} & heldout_sources
    backgrounds = [c for c in split["train"] if c.kind in TRAIN_BACKGROUND_KINDS and c.source not in heldout_sources]
    beds = [c for c in split["val"] if c.kind in EVAL_BED_KINDS]
    negatives = [c for c in split["val"] if c.kind == "hard_negatives"]
    if work.exists():
        shutil.rmtree(work)
    layout = {work / "clips" / LABEL: train, work / "clips" / "background": backgrounds,
              work / "heldout" / "clips" / LABEL: heldout, work / "heldout" / "clips" / "hard_negatives": negatives,
              work / "heldout" / "beds": beds}
    for folder, items in layout.items():
        folder.mkdir(parents=True)
        for c in items:
            os.symlink(c.path, folder / c.path.name)
    return {"train": [c.path.name for c in train], "heldout": [c.path.name for c in heldout],
            "train_sources": sorted({c.source for c in train}), "heldout_sources": sorted(heldout_sources),
            "backgrounds": len(backgrounds), "beds": len(beds), "bed_clips": beds, "hard_negatives": len(negatives)}


def f1_on_split(model: Path, split_dir: Path, labels: list[str], threads: int) -> dict[str, Any]:
    """Event / segment F1 of ``model`` (its own post-processing) on a synthesised split, per class."""
    from streamdet.train.datasets import read_scenes

    det = streamdet.Detector(model, device="cpu", threads=threads)
    records = read_scenes(split_dir)
    gt, durations = ground_truth(records, labels)
    pred = {r.path.name: [e for e in det.detect_file(r.path, name=r.path.name) if e.label in labels]
            for r in records}
    scored = score_events(pred, gt, durations, labels)
    scored["events"] = {c: sum(1 for evs in gt.values() for e in evs if e.label == c) for c in labels}
    scored["scenes"] = len(records)
    return scored


def _synth(out: Path, n: int, seed: int, config: Any, workers: int) -> Path:
    """A synthesised split, reused when ``out`` holds one of the same size, seed and configuration."""
    from streamdet.train.synth import synthesize_split

    manifest = out / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if (m.get("n_scenes"), m.get("seed"), m.get("config")) == (n, seed, config.to_dict()):
            return out
    synthesize_split(out, n, seed=seed, config=config, workers=workers)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; print Markdown, write JSON with ``--json``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", default=str(DEFAULT_CORPUS))
    ap.add_argument("--work", default=str(ROOT / "runs" / "teach"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heldout-scenes", type=int, default=80)
    ap.add_argument("--test-scenes", type=int, default=150)
    ap.add_argument("--real-scenes", type=int, default=150)
    ap.add_argument("--last-stage", action="store_true", help="also train the last Swin stage (distilled)")
    ap.add_argument("--place-distractors", action="store_true",
                    help="excerpts of the background/ recordings also serve as distractors")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", choices=sorted(TASKS), default="birds", help="the new class to teach")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    global LABEL
    LABEL = args.task
    corpus, work = Path(args.real), Path(args.work)
    if not (corpus / "backgrounds" / "MANIFEST.csv").is_file():
        print(f"error: {corpus} is not the real-audio corpus (no backgrounds/MANIFEST.csv); pass --real",
              file=sys.stderr)
        return 2
    data = prepare(corpus, work / "data")
    new_model = work / f"{LABEL}.onnx"
    load_before = os.getloadavg()
    t = time.perf_counter()
    config = TeachConfig(seed=args.seed, last_stage=args.last_stage, place_distractors=args.place_distractors)
    report = teach("alerts", work / "data" / "clips", new_model, config=config, threads=args.threads,
                   workers=args.threads, log=lambda m: print(m, file=sys.stderr))
    teach_s = time.perf_counter() - t
    load_after = os.getloadavg()

    # the new class on held-out recordings in held-out real backgrounds
    heldout_dir = _synth(work / "heldout_scenes", args.heldout_scenes, 2201,
                         real_scene_config(work / "data" / "heldout" / "clips", work / "data" / "heldout" / "beds",
                                           [LABEL]), args.threads)
    new_class = f1_on_split(new_model, heldout_dir, [LABEL], args.threads)
    det = streamdet.Detector(new_model, device="cpu", threads=args.threads)
    bed_alarms = background_false_alarms(det, data.pop("bed_clips"))

    # the old classes: held-out synthetic test and the real-audio benchmark, source model against new model
    from streamdet.train.synth import ALERTS_LABELS, SceneConfig

    old = list(ALERTS_LABELS)
    test_dir = _synth(work / "test_scenes", args.test_scenes, 3,
                      SceneConfig.heldout(sample_rate=16000, duration=10.0, labels=tuple(old),
                                          speech_cache_dir=str(work / "speech_cache")), args.threads)
    synthetic = {name: f1_on_split(m, test_dir, old, args.threads)
                 for name, m in (("source", BUNDLED_MODEL), ("new", new_model))}
    real = {}
    # the real-audio benchmark's scenes are drawn for the old labels (with `birds` among the labels the synthesiser
    # would draw other scenes), so the new model is scored on the very scenes and backgrounds the source model was
    prepared = prepare_real(corpus, work / "real_audio" / "corpus", old)
    source_real = evaluate_real(BUNDLED_MODEL, corpus, work / "real_audio", n_scenes=args.real_scenes,
                                scene_seed=REAL_SCENE_SEED, threads=args.threads, workers=args.threads,
                                prepared=prepared)
    det_new = streamdet.Detector(new_model, device="cpu", threads=args.threads)
    new_real = {"scenes": scene_figures(det_new, work / "real_audio" / f"scenes_{REAL_SCENE_SEED}", old),
                "backgrounds": background_false_alarms(
                    det_new, [c for c in prepared["split"]["val"] if c.part == "backgrounds"])}
    for name, r in (("source", source_real), ("new", new_real)):
        pc = r["scenes"]["per_class"]
        present = [c for c in old if pc[c]["events"]]
        real[name] = {"classes": present, "per_class": {c: pc[c] for c in present},
                      "event_f1_macro_old": round(sum(pc[c]["event_f1"] or 0 for c in present) / len(present), 4),
                      "segment_f1_macro_old": round(sum(pc[c]["segment_f1"] or 0 for c in present) / len(present), 4),
                      "background_false_alarms_per_minute": r["backgrounds"]["overall"]["false_alarms_per_minute"],
                      "background_labels": r["backgrounds"]["overall"]["labels"]}
    out = {"data": data, "teach_seconds": round(teach_s, 1), "load_average_before": load_before,
           "load_average_after": load_after, "cpu_count": os.cpu_count(), "threads": args.threads,
           "teach_report": {k: report[k] for k in ("classes", "old_scores_max_abs_diff", "timings", "head")},
           "new_class_heldout": new_class, "new_class_background_alarms": bed_alarms,
           "old_synthetic_test": synthetic, "old_real_audio": real}
    print(markdown(out, report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


def markdown(out: dict[str, Any], report: dict[str, Any]) -> str:
    """The figures as Markdown."""
    nc = out["new_class_heldout"]
    bg = out["new_class_background_alarms"]["overall"]
    syn, real = out["old_synthetic_test"], out["old_real_audio"]
    lines = [
        f"teach: {out['teach_seconds']} s with {out['threads']} threads (load average before "
        f"{out['load_average_before'][0]:.2f}, after {out['load_average_after'][0]:.2f}, {out['cpu_count']} cores); "
        f"old classes' scores differ by at most {out['teach_report']['old_scores_max_abs_diff']:.1e}",
        "",
        f"new class `{LABEL}` on held-out recordings ({', '.join(out['data']['heldout_sources'])}) in held-out real "
        f"backgrounds: event F1 **{nc['per_class'][LABEL]['event_f1']}**, segment F1 "
        f"{nc['per_class'][LABEL]['segment_f1']} ({nc['events'][LABEL]} events, {nc['scenes']} scenes); on those "
        f"backgrounds alone {bg['labels'].get(LABEL, 0) / bg['minutes']:.2f} `{LABEL}` false alarms per minute "
        f"({bg['minutes']} min; events of every label: {bg['labels']})",
        "",
        "| old classes | source model | new model |",
        "|---|---|---|",
        f"| held-out synthetic test, event F1 macro | {syn['source']['event_f1_macro']} | "
        f"{syn['new']['event_f1_macro']} |",
        f"| held-out synthetic test, segment F1 macro | {syn['source']['segment_f1_macro']} | "
        f"{syn['new']['segment_f1_macro']} |",
        f"| real-audio benchmark, event F1 macro ({', '.join(real['source']['classes'])}) | "
        f"{real['source']['event_f1_macro_old']} | {real['new']['event_f1_macro_old']} |",
        f"| real-audio benchmark, background false alarms / min (all labels) | "
        f"{real['source']['background_false_alarms_per_minute']} | "
        f"{real['new']['background_false_alarms_per_minute']} |",
        "",
        "validation report of the run (class, new/old, validation events, event F1 before/after, segment F1 "
        "before/after):",
        "",
    ]
    lines += ["    " + "  ".join(r) for r in report_rows(report)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
