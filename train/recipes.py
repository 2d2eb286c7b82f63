"""Training recipes: synthesis -> training -> threshold tuning -> ONNX export -> evaluation through the engine.

``alerts`` (the bundled default model, docs/DESIGN.md §7) is reproduced end to end by one call::

    streamdet train --recipe alerts --out runs/alerts          # ~75 min on 2 CPU cores (limit: 90)
    streamdet train --recipe alerts --quick --out runs/quick   # the same path in a few minutes (CI)

``--from MODEL`` replaces stage 3 by an adaptation of a trained model to the recipe's data (with ``--real``: to real
audio): :mod:`streamdet.train.adapt` (the recipe's ``adapt`` training with MODEL as a frozen teacher, then the
weight interpolation between MODEL and the fine-tuned weights chosen on validation; ~35 min on 2 CPU cores).

Stages (each is skipped when its output already exists and matches, so a rerun continues where it stopped):

1. **synthesis** - strong-label scenes (:mod:`streamdet.train.synth`): ``train`` and ``val`` with the training
   ranges and different seeds, ``test`` with :meth:`SceneConfig.heldout` (wider generator/room ranges, another
   speech pool, another seed), SNR -5..20 dB; plus the example clip shipped with the package.
2. **features** - the front-end over every train/val scene, cached as float16 (:class:`FeatureBank`).
3. **training** - :class:`streamdet.train.loop.Trainer`; ``best.pt`` keeps the EMA weights of the best epoch on
   the validation subset (frame mAP, threshold-free).
4. **export + tuning** - the EMA model to ONNX (:func:`streamdet.export.to_onnx`), the validation files run
   through :class:`streamdet.Detector` (the real engine at its default hop/lookahead) to get score tracks, and
   per-class (on, off) thresholds, minimum durations and minimum gaps tuned on them
   (:mod:`streamdet.train.thresholds`).
5. **evaluation** - the held-out test split through the engine with the tuned post-processing: event-based F1 (200 ms
   collar) and segment-based F1 (1 s), macro and micro, per class; also at a longer lookahead; plus the ONNX
   size and the time per window on one CPU thread.
6. **final model** - re-exported with the thresholds and the provenance (recipe, data, training, figures) in its
   metadata, checked with the engine on the example clip; ``report.json`` and figures (PNG, if matplotlib is
   installed) next to it; with ``bundle_dir`` copied there (the package's ``streamdet/bundled``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .loop import TrainConfig

__all__ = ["RECIPES", "Recipe", "alerts_recipe", "get_recipe", "run_recipe"]


@dataclass
class Recipe:
    """Everything that determines a trained model (JSON-able, stored in its provenance)."""

    name: str
    labels: tuple[str, ...]
    sample_rate: int
    scene_duration: float
    n_train: int
    n_val: int
    n_test: int
    seeds: dict[str, int]
    model_type: str
    model: dict[str, Any]
    window_seconds: float
    train: TrainConfig
    val_subset: int = 100  # validation files scored after every epoch (all of them are used for tuning)
    eval_hop: float = 0.5  # the engine's defaults (streamdet file / Detector)
    eval_lookahead: float = 0.0
    extra_lookaheads: tuple[float, ...] = (1.0,)
    example: dict[str, Any] = field(default_factory=dict)
    quick: bool = False
    # Real recordings (used when the recipe is given a corpus; see streamdet.train.real):
    real_scenes: dict[str, Any] = field(default_factory=dict)  # SceneConfig overrides of train/val with real audio
    n_real_val: int = 150  # scenes of real validation recordings for checkpoint selection and tuning
    real_val_subset: int = 60  # of which scored after every epoch
    n_real_bench: int = 150  # scenes of the real-audio benchmark (another seed than the tuning scenes)
    mine_after: int | None = None  # with a real corpus: hard-negative mining after this many epochs (None: never)
    mine_boost: float = 3.0
    # Adaptation (``--from MODEL``): fine-tune MODEL on this recipe's data with MODEL as a frozen teacher (learning
    # without forgetting, ``adapt.distill_weight``), mining after ``adapt_mine_after`` epochs, then interpolate the
    # weights between MODEL and the fine-tuned ones (WiSE-FT) at the mixing weight chosen on validation among these.
    adapt: TrainConfig | None = None
    adapt_mine_after: int | None = None
    adapt_alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def scene_config(self, split: str, speech_cache_dir: str | None = None, real: Mapping[str, Path] | None = None
                     ) -> Any:
        """The :class:`SceneConfig` of a split (``train``, ``val``, ``test``, ``example``); ``real``
        (``{"clips", "beds"}`` of the training side of the real corpus) adds real recordings to train and val."""
        from .synth import SceneConfig

        common = {
            "sample_rate": self.sample_rate,
            "duration": self.scene_duration,
            "labels": tuple(self.labels),
            "speech_cache_dir": speech_cache_dir,
        }
        if split == "test":
            return SceneConfig.heldout(**common)
        if split == "example":
            ex = dict(self.example)
            ex.pop("seed", None)
            return SceneConfig(**{**common, **ex})
        if real is not None:
            common.update(clip_folders=(str(real["clips"]),), background_folders=(str(real["beds"]),),
                          **self.real_scenes)
        return SceneConfig(**common)

    def build_model(self) -> Any:
        """The recipe's untrained model."""
        from streamdet.models import build_model

        return build_model(self.model_type, labels=list(self.labels), num_classes=len(self.labels), **self.model)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        d["adapt"] = None if self.adapt is None else self.adapt.to_dict()
        return json.loads(json.dumps(d))


SEEDS = {"train": 1, "val": 2, "test": 3, "real_val": 4, "val_synthetic": 5, "real_bench": 101}
# With a real corpus, train/val scenes lay real recordings under half of their background layers, draw real target
# clips for a share of the events (real speech for half of the speech events; the thin alert classes less often,
# so that a handful of recordings is not learnt by heart), add real distractors (hard negatives, music, animals,
# household) beside the procedural ones, and capture a third of the mixes through a device, a tenth clipped.
REAL_SCENES: dict[str, Any] = {
    "background_folder_prob": 0.5,
    "clip_prob": 0.3,
    "clip_prob_by_label": {"speech": 0.5},
    "distractors": (0, 3),
    "capture_prob": 0.3,
    "clipping_prob": 0.1,
}


def alerts_recipe(quick: bool = False) -> Recipe:
    """The bundled ``alerts`` model: a small HTS-AT on 2 s windows of 16 kHz audio.

    Architecture (official HTS-AT, reduced): 64 mel bins (50 Hz - 8 kHz, 512-point DFT, hop 128 = 8 ms), a 2 s
    window (251 frames stretched to 256) folded into a 128 x 128 image (2 chunks of 1 s), 4 x 4 patches, three
    Swin stages (embed 48, depths 2-2-4, heads 3-6-12, window 8; the last stage attends over the whole window),
    token-semantic head: 16 steps of 125 ms per window. 2.2 M parameters. ``best.pt`` is the EMA weights of the
    epoch with the best validation frame mAP (threshold-free).
    """
    from .synth import ALERTS_LABELS

    model = {
        "sample_rate": 16000,
        "clip_samples": 32000,
        "n_fft": 512,
        "hop_length": 128,
        "n_mels": 64,
        "fmin": 50.0,
        "fmax": 8000.0,
        "spec_size": 128,
        "patch_size": 4,
        "patch_stride": [4, 4],
        "embed_dim": 48,
        "depths": [2, 2, 4],
        "num_heads": [3, 6, 12],
        "window_size": 8,
        "drop_path_rate": 0.0,
    }
    example = {"duration": 20.0, "events": (5, 6), "snr_db": (6.0, 15.0), "max_polyphony": 1, "distractors": (1, 1),
               "truncate_prob": 0.0, "seed": 20}
    if quick:
        train = TrainConfig(epochs=2, steps_per_epoch=30, batch_size=16, warmup_steps=10, lr=1e-3, ema_decay=0.99,
                            mixup_prob=0.0, specaugment=False, log_every=10)
        adapt = dataclasses.replace(train, epochs=2, steps_per_epoch=8, warmup_steps=2, lr=3e-4, distill_weight=0.5)
        return Recipe(
            "alerts", tuple(ALERTS_LABELS), 16000, 10.0, 96, 24, 24, SEEDS, "htsat", model, 2.0, train,
            val_subset=12, example=example, quick=True, real_scenes=REAL_SCENES, n_real_val=12, real_val_subset=12,
            n_real_bench=12, mine_after=1, adapt=adapt, adapt_mine_after=1, adapt_alphas=(0.5, 1.0),
        )
    # No mixup, SpecAugment or drop-path: in this compute budget the model under-fits, and each of them slowed
    # learning (validation after 1-2 epochs, same seed: event F1 0.10 -> 0.15, segment F1 0.35 -> 0.46 without
    # any of them; see docs/models/alerts.md). Gain, rooms, EQ, devices and SNR still vary in the scenes.
    train = TrainConfig(epochs=12, steps_per_epoch=350, batch_size=32, warmup_steps=300, lr=1e-3, ema_decay=0.999,
                        mixup_prob=0.0, specaugment=False)
    # Adapting a trained alerts model to real audio (--from): 3 x 250 steps at a third of the learning rate, the
    # start model as teacher at weight 1.0. Of the two settings measured, the one with the better validation figures
    # after interpolation (teacher 0.5 x 500 steps kept the start model: no mixing weight kept the synthetic
    # validation; docs/models/alerts.md).
    adapt = dataclasses.replace(train, epochs=3, steps_per_epoch=250, warmup_steps=50, lr=3e-4, ema_decay=0.998,
                                distill_weight=1.0)
    return Recipe(
        "alerts", tuple(ALERTS_LABELS), 16000, 10.0, 4000, 400, 500, SEEDS, "htsat", model, 2.0, train,
        val_subset=100, example=example, real_scenes=REAL_SCENES, n_real_val=150, real_val_subset=60,
        n_real_bench=150, mine_after=6, adapt=adapt, adapt_mine_after=1,
    )


RECIPES: dict[str, Callable[[bool], Recipe]] = {"alerts": alerts_recipe}


def get_recipe(name: str, quick: bool = False) -> Recipe:
    """A recipe by name (``alerts``)."""
    try:
        return RECIPES[name](quick)
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}") from None


# ------------------------------------------------------------------------------------------------------- helpers
class _Log:
    """Stage messages and progress callbacks on a rich console (or silent)."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(f"[{_mmss(time.perf_counter() - self.t0)}] {msg}", highlight=False)

    def progress(self, what: str) -> Callable[[int, int], None]:
        state = {"last": 0.0}

        def cb(done: int, total: int) -> None:
            now = time.perf_counter()
            if done == total or now - state["last"] > 15:
                state["last"] = now
                self(f"  {what}: {done}/{total}")

        return cb


def _mmss(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _synth(out: Path, n: int, seed: int, config: Any, workers: int, log: _Log, what: str, prefix: str = "scene"
           ) -> Path:
    """Synthesise a split unless ``out`` already holds the same one. ``prefix`` names its files (``prefix_00000``):
    splits whose files are scored together need different prefixes, as files are known by name."""
    from .synth import synthesize_split

    settings = config.to_dict()
    settings.pop("speech_cache_dir", None)  # where speech renderings are cached, not what a scene holds
    # the folders' contents, not only their paths: a re-split corpus laid out at the same place is another split
    folders = {str(root): sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())
               for root in (*config.clip_folders, *config.background_folders)}
    key = _digest({"n": n, "seed": seed, "config": settings, "folders": folders}
                  | ({"prefix": prefix} if prefix != "scene" else {}))
    stamp = out / "recipe.key"
    if (out / "manifest.json").exists() and stamp.exists() and stamp.read_text() == key:
        log(f"{what}: {n} scenes already in {out}")
        return out
    if out.exists():
        log(f"{what}: {out} holds another or an unfinished split: synthesising it again")
        shutil.rmtree(out)
    t = time.perf_counter()
    synthesize_split(out, n, seed=seed, config=config, workers=workers, prefix=prefix, progress=log.progress(what))
    stamp.write_text(key)
    log(f"{what}: {n} scenes in {time.perf_counter() - t:.0f} s")
    return out


def _bank(split_dir: Path, cache: Path, model: Any, labels: list[str], log: _Log, what: str) -> Any:
    from .datasets import read_scenes
    from .torch_data import FeatureBank

    key = _digest({"split": (split_dir / "recipe.key").read_text(), "frontend": model.frontend_config()})
    stamp = cache.with_suffix(".key")
    if cache.exists() and stamp.exists() and stamp.read_text() == key:
        return FeatureBank.load(cache)
    t = time.perf_counter()
    bank = FeatureBank.build(read_scenes(split_dir), model, labels, progress=log.progress(what))
    bank.save(cache)
    stamp.write_text(key)
    log(f"{what}: {len(bank)} files in {time.perf_counter() - t:.0f} s")
    return bank


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def measure_latency(onnx_path: Path, runs: int = 50, threads: int = 1) -> dict[str, float]:
    """Milliseconds per window (batch 1) with ONNX Runtime on ``threads`` CPU threads: median and p90."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    from streamdet.perf import time_calls

    inp = sess.get_inputs()[0]
    n = int(inp.shape[1])
    x = (np.random.default_rng(0).standard_normal((1, n)) * 0.1).astype(np.float32)
    timing = time_calls(lambda: sess.run(None, {inp.name: x}), repeats=runs, warmup=5)
    return {"median_ms": round(timing.median * 1e3, 2), "p90_ms": round(timing.p90 * 1e3, 2),
            "threads": threads, "batch": 1}


def _export(
    model: Any, path: Path, recipe: Recipe, thresholds: Mapping | None, provenance: Mapping,
    postprocess: Mapping | None = None,
) -> Any:
    try:
        from streamdet.export import to_onnx
    except ImportError as exc:  # pragma: no cover - until the exporter lands
        raise RuntimeError(f"streamdet.export.to_onnx is not available ({exc}); cannot export the model") from exc
    thr = None if thresholds is None else {k: [float(v[0]), float(v[1])] for k, v in thresholds.items()}
    return to_onnx(
        model, path, window_seconds=recipe.window_seconds, labels=list(recipe.labels), thresholds=thr,
        postprocess=postprocess, provenance=dict(provenance),
    )


def _engine_tracks(onnx_path: Path, records: list, hop: float, lookahead: float, threads: int) -> dict:
    import streamdet

    det = streamdet.Detector(onnx_path, device="cpu", hop=hop, lookahead=lookahead, threads=threads)
    tracks = {}
    for r in records:
        tr = det.score_track(r.path)
        tracks[r.path.name] = (tr.scores, tr.frame_seconds, float(r.duration))
    return tracks


def _engine_events(onnx_path: Path, records: list, hop: float, lookahead: float, threads: int) -> dict:
    import streamdet

    det = streamdet.Detector(onnx_path, device="cpu", hop=hop, lookahead=lookahead, threads=threads)
    out = {}
    for r in records:
        out[r.path.name] = [dataclasses.replace(e, stream=r.path.name) for e in det.detect_file(r.path)]
    return out


# --------------------------------------------------------------------------------------------------------- recipe
@dataclass
class _Run:
    """The state of one recipe run, handed from stage to stage."""

    recipe: Recipe
    out: Path
    log: _Log
    threads: int
    workers: int
    device: str
    real_root: Path | None
    timings: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.recipe.labels)

    def timed(self, name: str, t0: float) -> None:
        self.timings[f"{name}_s"] = round(time.perf_counter() - t0, 1)


def run_recipe(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    resume: bool = False,
    workers: int | None = None,
    threads: int | None = None,
    device: str = "auto",
    real: str | Path | None = None,
    start: str | Path | None = None,
    bundle_dir: str | Path | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Run ``recipe`` into ``out_dir``; returns the report (also written to ``out_dir/report.json``).

    ``resume``: continue an interrupted training from ``train/last.pt`` (data and features are always reused
    when they match the recipe). ``workers``: synthesis processes (default: CPU cores). ``threads``: torch and
    ONNX Runtime threads (default: CPU cores). ``real``: a real-audio corpus (``targets/`` and ``backgrounds/``
    with manifests, see :mod:`streamdet.train.real`): its training sources go into the scenes, its validation
    sources into tuning and the real-audio benchmark. ``start``: adapt this trained model (a bundled name, a
    streamdet ``.onnx`` or a checkpoint) instead of training from scratch (:mod:`streamdet.train.adapt`: the
    recipe's ``adapt`` training with the start model as teacher, then the weight interpolation chosen on
    validation). ``bundle_dir``: copy the final model and example clip there.
    """
    import torch

    from .loop import default_threads
    from .synth import speech

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cores = default_threads()
    run = _Run(recipe, out, _Log(console), threads or cores, workers or cores, device,
               None if real is None else Path(real))
    torch.set_num_threads(run.threads)
    t_all = time.perf_counter()
    run.log(f"recipe {recipe.name}{' (quick)' if recipe.quick else ''} -> {out} ({run.threads} threads, "
            f"{run.workers} workers)")
    if "speech" in run.labels and not speech.available():
        run.log("[yellow]warning: espeak-ng is not installed: the speech class gets no generated examples[/yellow]")
    if run.real_root is None:
        run.log("[yellow]warning: no real-audio corpus (--real): synthetic scenes only, and no real-audio "
                "figures[/yellow]")
    _stage_synthesis(run)
    model = _stage_features(run)
    if start is None:
        best, summary = _stage_training(run, model, resume)
    else:
        best, summary = _stage_adaptation(run, model, start, resume)
    thresholds, postprocess, tuning = _stage_tuning(run, best)
    figures = _stage_evaluation(run, best, thresholds, postprocess)
    run.timings["total_s"] = round(time.perf_counter() - t_all, 1)
    report = _stage_final(run, best, summary, thresholds, postprocess, tuning, figures)
    if bundle_dir is not None:
        bundle = Path(bundle_dir)
        bundle.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report["model"], bundle / Path(report["model"]).name)
        shutil.copyfile(out / "example.wav", bundle / "example.wav")
        shutil.copyfile(out / "example.tsv", bundle / "example.tsv")
        run.log(f"bundled {Path(report['model']).name} and example.wav into {bundle}")
    run.log(f"done in {_mmss(time.perf_counter() - t_all)}: {report['model']} ({report['onnx_bytes'] / 1e6:.1f} MB)")
    return report


def _stage_synthesis(run: _Run) -> None:
    """1. The real corpus split by source (if any), the synthetic splits, the real validation scenes, the example."""
    import soundfile as sf

    from .real import attribution_markdown, split_summary
    from .real_eval import prepare_real, real_scene_config
    from .synth import synthesize_scene, write_tsv

    t = time.perf_counter()
    recipe, out = run.recipe, run.out
    cache_dir = str(out / "speech_cache")
    real_train = None
    if run.real_root is not None:
        prep = prepare_real(run.real_root, out / "real", run.labels)
        run.data["real"] = prep
        real_train = prep["dirs"]["train"]
        used = {c.group: side for side, cs in prep["split"].items() for c in cs}
        (out / "ATTRIBUTION.md").write_text(
            "# Real recordings used by this model\n\nTraining sources shaped the weights; validation sources were "
            "used only for checkpoint selection, threshold tuning and the real-audio figures.\n\n"
            + attribution_markdown(prep["clips"], used))
        summary = split_summary(prep["split"])
        run.data["real_split"] = summary
        run.log(f"real corpus {run.real_root}: {len(prep['split']['train'])} training and "
                f"{len(prep['split']['val'])} validation recordings (split by source)")
    splits = {}
    for split, n in (("train", recipe.n_train), ("val", recipe.n_val), ("test", recipe.n_test)):
        cfg = recipe.scene_config(split, cache_dir, real_train if split != "test" else None)
        splits[split] = _synth(out / "data" / split, n, recipe.seeds[split], cfg, run.workers, run.log,
                               f"synth {split}")
    if run.real_root is not None:
        val_dirs = run.data["real"]["dirs"]["val"]
        # a quarter of the tuning scenes hold no target at all: thresholds also see real audio that must not fire
        cfg = real_scene_config(val_dirs["clips"], val_dirs["beds"], run.labels, events=(0, 3))
        splits["real_val"] = _synth(out / "data" / "real_val", recipe.n_real_val, recipe.seeds["real_val"], cfg,
                                    run.workers, run.log, "synth real_val", prefix="real_scene")
    run.data["splits"] = splits
    ex_cfg = recipe.scene_config("example", cache_dir)
    example = synthesize_scene(recipe.example.get("seed", 0), ex_cfg)
    sf.write(out / "example.wav", example.audio, ex_cfg.sample_rate, subtype="PCM_16")
    write_tsv(out / "example.tsv", {"example.wav": example.events})
    run.data["example_events"] = example.events
    run.timed("synthesis", t)


def _stage_features(run: _Run) -> Any:
    """2. The front-end over every training and validation scene (cached); returns the fresh model."""
    import torch

    from .torch_data import FeatureBank

    t = time.perf_counter()
    recipe, splits = run.recipe, run.data["splits"]
    torch.manual_seed(recipe.train.seed)
    model = recipe.build_model()
    if model.native_window_samples != round(recipe.window_seconds * recipe.sample_rate):
        raise ValueError("the recipe's window must be the model's native window")
    run.data["train_bank"] = _bank(splits["train"], run.out / "cache" / "train.npz", model, run.labels, run.log,
                                   "features train")
    val_bank = _bank(splits["val"], run.out / "cache" / "val.npz", model, run.labels, run.log, "features val")
    val_idx = list(range(min(recipe.val_subset, len(val_bank))))
    run.data["val_idx_synthetic"], run.data["val_idx_real"] = list(val_idx), []
    if "real_val" in splits:  # checkpoints are chosen on synthetic and real validation scenes together
        real = _bank(splits["real_val"], run.out / "cache" / "real_val.npz", model, run.labels, run.log,
                     "features real_val")
        n = len(val_bank)
        val_bank = FeatureBank(val_bank.records + real.records, val_bank.features + real.features, val_bank.spec,
                               val_bank.pad_seconds, run.labels)
        run.data["val_idx_real"] = [n + i for i in range(min(recipe.real_val_subset, len(real)))]
        val_idx += run.data["val_idx_real"]
    run.data["val_bank"], run.data["val_idx"] = val_bank, val_idx
    run.timed("features", t)
    return model


def _stage_training(run: _Run, model: Any, resume: bool, teacher: Any = None) -> tuple[Any, dict[str, Any]]:
    """3. Training (with a real corpus, hard-negative mining part-way if the recipe asks: without one the recipe
    trains exactly as the synthetic-only bundled model was trained); returns the best EMA model. With a ``teacher``
    (adaptation) the recipe's ``adapt`` training runs instead, into ``adapt/``, distilling from the teacher."""
    import numpy as np
    from streamdet.models import load_checkpoint

    from .loop import Trainer
    from .mining import false_positive_scores, mined_weights

    t = time.perf_counter()
    recipe = run.recipe
    base, mine_after, folder = ((recipe.train, recipe.mine_after, "train") if teacher is None
                                else (recipe.adapt, recipe.adapt_mine_after, "adapt"))
    cfg = dataclasses.replace(base, device=run.device, threads=run.threads)
    trainer = Trainer(model, run.data["train_bank"], run.labels, cfg, run.out / folder, val=run.data["val_bank"],
                      val_indices=run.data["val_idx"], console=run.log.console, provenance={"recipe": recipe.name},
                      teacher=teacher)
    mined_path = trainer.out_dir / "mined_weights.npy"
    if not resume:  # a fresh run: forget any earlier training in this folder
        for p in (trainer.last_path, trainer.best_path, trainer.out_dir / "history.jsonl", mined_path):
            p.unlink(missing_ok=True)
    mining: dict[str, Any] | None = None
    if run.real_root is not None and mine_after and mine_after < cfg.epochs:
        trainer.fit(resume=resume, max_epochs=mine_after)
        if mined_path.exists():
            trainer.weights = np.load(mined_path)
            mining = json.loads(mined_path.with_suffix(".json").read_text())
        else:
            tm = time.perf_counter()
            fp = false_positive_scores(trainer.ema.module, run.data["train_bank"], run.labels)
            trainer.weights, mining = mined_weights(trainer.weights, fp, recipe.mine_boost)
            mining.update(after_epoch=mine_after, seconds=round(time.perf_counter() - tm, 1))
            np.save(mined_path, trainer.weights)
            mined_path.with_suffix(".json").write_text(json.dumps(mining))
        run.log(f"hard-negative mining after epoch {mine_after}: {mining['files_fp_over_0.5']} of "
                f"{mining['files']} training files with false-positive score > 0.5 now get "
                f"{100 * mining['drawn_share_of_files_fp_over_0.5']:.0f} % of the draws "
                f"(was {100 * mining['before_share_of_files_fp_over_0.5']:.0f} %)")
        resume = True
    summary = trainer.fit(resume=resume)
    summary["mining"] = mining
    run.timed("training", t)
    step_s = summary["train_seconds"] / max(1, summary["steps"])
    summary["seconds_per_step"] = round(step_s, 3)
    run.log(f"training: {summary['steps']} steps, {summary['train_seconds']:.0f} s ({step_s:.2f} s/step of "
            f"{cfg.batch_size}), best epoch {summary['best_epoch']}")
    run.data["best_path"] = trainer.best_path
    summary["folder"] = folder
    return load_checkpoint(trainer.best_path).float().eval(), summary


def _stage_adaptation(run: _Run, fresh: Any, start: str | Path, resume: bool) -> tuple[Any, dict[str, Any]]:
    """3 (with ``--from``). Fine-tune the start model with itself as teacher, then keep the weight interpolation
    between the two chosen on validation (:mod:`streamdet.train.adapt`); returns that model and the summary."""
    from streamdet.models import save_checkpoint

    from .adapt import check_start_model, choose_alpha, interpolate_weights
    from .teach import load_source

    recipe, labels = run.recipe, run.labels
    if recipe.adapt is None:
        raise ValueError(f"recipe {recipe.name} has no adaptation settings (--from)")
    start_model, info = load_source(start)
    check_start_model(start_model, info, labels, recipe.window_seconds, fresh)
    run.log(f"adapting {info['path']} (teacher weight {recipe.adapt.distill_weight})")
    tuned, summary = _stage_training(run, copy.deepcopy(start_model), resume, teacher=start_model)
    t = time.perf_counter()
    bank = run.data["val_bank"]
    real = run.data["val_idx_real"]
    synthetic_bank, synthetic = bank, run.data["val_idx_synthetic"]
    if run.real_root is not None:  # with a real corpus the val scenes hold recorded audio: judge "synthetic" apart
        cfg = recipe.scene_config("val", str(run.out / "speech_cache"))
        split = _synth(run.out / "data" / "val_synthetic", recipe.val_subset, recipe.seeds["val_synthetic"], cfg,
                       run.workers, run.log, "synth val_synthetic")
        synthetic_bank = _bank(split, run.out / "cache" / "val_synthetic.npz", fresh, labels, run.log,
                               "features val_synthetic")
        synthetic = list(range(len(synthetic_bank)))
    sides = {"synthetic": (synthetic_bank, synthetic), "real": (bank, real)} if real else \
        {"synthetic": (synthetic_bank, synthetic)}

    def score(model: Any) -> dict[str, float]:
        out = _tuned_figures(model, sides, labels, recipe.eval_hop, recipe.eval_lookahead)
        out.setdefault("real", out["synthetic"])
        return out

    alpha, table = choose_alpha(start_model, tuned, recipe.adapt_alphas, score)
    model = interpolate_weights(start_model, tuned, alpha)
    path = run.out / summary["folder"] / "interpolated.pt"
    save_checkpoint(model, path, training={"recipe": recipe.name, "adapted_from": str(info["path"]),
                                           "alpha": alpha})
    run.data["best_path"] = path
    summary["adaptation"] = {"from": str(info["path"]), "from_sha256": _sha256(Path(info["path"])),
                             "distill_weight": recipe.adapt.distill_weight,
                             "metric": "mean of macro event F1 and segment F1 with thresholds and post-processing "
                                       f"tuned on both sides: synthetic ({len(synthetic)} scenes without recorded "
                                       f"audio), real ({len(real)} real scenes)", "alphas": table,
                             "alpha": alpha}
    run.log("weight interpolation start -> fine-tuned (validation, tuned (event F1 + segment F1) / 2, synthetic / "
            "real): "
            + ", ".join(f"{r['alpha']:g}: {r['synthetic']:.3f} / {r['real']:.3f}" for r in table)
            + f"; kept {alpha:g}")
    run.timed("interpolation", t)
    return model, summary


def _tuned_figures(model: Any, sides: Mapping[str, tuple[Any, list[int]]], labels: list[str], hop: float,
                   lookahead: float) -> dict[str, float]:
    """Per side (``{name: (FeatureBank, indices)}``), the mean of macro event F1 and segment F1 of ``model`` with
    thresholds and post-processing tuned on all sides together (offline score tracks, the engine's rules): what
    the recipe's tuning stage would make of this model, cheaply."""
    from .loop import ground_truth, offline_tracks, score_events
    from .thresholds import tracks_to_events, tune_postprocessing

    parts = {name: (offline_tracks(model, bank, hop, lookahead, idx), [bank.records[i] for i in idx])
             for name, (bank, idx) in sides.items()}
    tracks = {k: v for tr, _ in parts.values() for k, v in tr.items()}
    gt, _ = ground_truth([r for _, recs in parts.values() for r in recs], labels)
    thresholds, postprocess, _ = tune_postprocessing(tracks, gt, labels)
    out = {}
    for name, (tr, recs) in parts.items():
        side_gt, durations = ground_truth(recs, labels)
        pred = tracks_to_events(tr, labels, thresholds, **_per_class(postprocess, labels))
        s = score_events(pred, side_gt, durations, labels)
        out[name] = round((s["event_f1_macro"] + s["segment_f1_macro"]) / 2, 4)
    return out


def _stage_tuning(run: _Run, best: Any) -> tuple[dict, dict, dict]:
    """4. Export, validation score tracks through the engine, per-class thresholds and post-processing tuned on
    the synthetic and the real validation scenes together."""
    from .datasets import read_scenes
    from .loop import ground_truth, score_events
    from .thresholds import tracks_to_events, tune_postprocessing

    t = time.perf_counter()
    recipe, labels, splits = run.recipe, run.labels, run.data["splits"]
    plain = run.out / "model_untuned.onnx"
    _export(best, plain, recipe, None, {"recipe": recipe.name, "stage": "untuned"})
    records = read_scenes(splits["val"]) + (read_scenes(splits["real_val"]) if "real_val" in splits else [])
    tracks = _engine_tracks(plain, records, recipe.eval_hop, recipe.eval_lookahead, run.threads)
    gt, dur = ground_truth(records, labels)
    thresholds, postprocess, tuning = tune_postprocessing(tracks, gt, labels)
    default = score_events(tracks_to_events(tracks, labels, dict.fromkeys(labels, (0.5, 0.3))), gt, dur, labels)
    tuned = score_events(tracks_to_events(tracks, labels, thresholds, **_per_class(postprocess, labels)), gt, dur,
                         labels)
    run.data["val_figures"] = {"default": default, "tuned": tuned, "files": len(records)}
    run.log(f"validation (engine, hop {recipe.eval_hop} s, {len(records)} scenes): event F1 "
            f"{default['event_f1_macro']} -> {tuned['event_f1_macro']} with tuned thresholds and post-processing, "
            f"segment F1 {tuned['segment_f1_macro']}")
    run.timed("tuning", t)
    return thresholds, postprocess, tuning


def _stage_evaluation(run: _Run, best: Any, thresholds: Mapping, postprocess: Mapping) -> dict[str, Any]:
    """5. The held-out synthetic test and the real-audio benchmark through the engine, latency on one thread."""
    from streamdet.metrics import write_events_tsv

    from .datasets import read_scenes
    from .loop import ground_truth, score_events
    from .real_eval import evaluate_real

    t = time.perf_counter()
    recipe, labels, out = run.recipe, run.labels, run.out
    tuned = out / "model_tuned.onnx"
    _export(best, tuned, recipe, thresholds, {"recipe": recipe.name, "stage": "tuned"}, postprocess)
    test_records = read_scenes(run.data["splits"]["test"])
    test_gt, test_dur = ground_truth(test_records, labels)
    test_pred = _engine_events(tuned, test_records, recipe.eval_hop, recipe.eval_lookahead, run.threads)
    write_events_tsv(test_pred, out / "test_predictions.tsv")
    test = score_events(test_pred, test_gt, test_dur, labels)
    variants = {}
    for la in recipe.extra_lookaheads:
        pred = _engine_events(tuned, test_records, recipe.eval_hop, la, run.threads)
        s = score_events(pred, test_gt, test_dur, labels)
        variants[f"lookahead_{la:g}s"] = {k: s[k] for k in ("event_f1_macro", "segment_f1_macro",
                                                            "segment_f1_micro", "event_f1_micro")}
    latency = measure_latency(tuned, runs=20 if recipe.quick else 100)
    run.log(f"test (held-out synthetic, engine hop {recipe.eval_hop} s lookahead {recipe.eval_lookahead} s): event F1 "
            f"macro {test['event_f1_macro']}, segment F1 macro {test['segment_f1_macro']}; "
            f"{latency['median_ms']} ms/window on 1 thread")
    val = run.data["val_figures"]
    figures: dict[str, Any] = {
        "validation": {"split": f"{recipe.n_val} synthetic scenes (seed {recipe.seeds['val']}, training ranges)"
                                + (f" + {recipe.n_real_val} real scenes (seed {recipe.seeds['real_val']})"
                                   if "real_val" in run.data["splits"] else ""),
                       "default_thresholds": _headline(val["default"]), "tuned_thresholds": _headline(val["tuned"])},
        "test": {"split": f"{recipe.n_test} scenes, seed {recipe.seeds['test']}, held-out ranges "
                          "(SceneConfig.heldout), SNR -5..20 dB, no recorded audio",
                 **_headline(test), "per_class": test["per_class"], "variants": variants},
        "engine": {"hop": recipe.eval_hop, "lookahead": recipe.eval_lookahead, "median_filter": 0.0,
                   "postprocess": "per class, tuned on validation (the model's postprocess metadata)"},
        "metrics": {"event_based": "sed_eval EventBasedMetrics, t_collar 0.2 s, offset max(0.2 s, 20% of length)",
                    "segment_based": "sed_eval SegmentBasedMetrics, 1 s segments"},
        "latency_1thread": latency,
    }
    if run.real_root is not None:
        real = evaluate_real(tuned, run.real_root, out / "real_bench", n_scenes=recipe.n_real_bench,
                             scene_seed=recipe.seeds["real_bench"], hop=recipe.eval_hop,
                             lookahead=recipe.eval_lookahead, threads=run.threads, workers=run.workers,
                             prepared=run.data["real"])
        real["split_summary"] = run.data["real_split"]
        figures["real"] = real
        sc, bg = real["scenes"], real["backgrounds"]["overall"]
        run.log(f"real audio (validation sources): event F1 macro {sc['event_f1_macro']}, segment F1 macro "
                f"{sc['segment_f1_macro']} over {', '.join(sc['classes'])}; backgrounds alone "
                f"{bg['false_alarms_per_minute']} false alarms per minute ({bg['minutes']} min); steady noise "
                f"{real['steady']['events']} events")
    run.timed("evaluation", t)
    return figures


def _stage_final(run: _Run, best: Any, summary: Mapping[str, Any], thresholds: Mapping, postprocess: Mapping,
                 tuning: Mapping, figures: Mapping[str, Any]) -> dict[str, Any]:
    """6. The final model with provenance, checked with the engine on the example clip; report.json, plots."""
    import onnxruntime
    import torch

    import streamdet

    recipe, out, labels = run.recipe, run.out, run.labels
    hist = summary["history"]
    data = ("synthetic scenes from streamdet.train.synth (procedural generators, espeak-ng speech)"
            + (" with the training sources of the real corpus (backgrounds, distractors, target clips; split by "
               "source, see ATTRIBUTION.md); validation sources only for selection, tuning and figures"
               if run.real_root is not None else "; no recorded audio"))
    adaptation = summary.get("adaptation")
    if adaptation:
        data += (f"; adapted from {Path(adaptation['from']).name} (sha256 {adaptation['from_sha256'][:16]}...), "
                 "which was trained as its own provenance says")
    training = {"steps": summary["steps"], "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
                "train_seconds": summary["train_seconds"], "seconds_per_step": summary["seconds_per_step"],
                "final_loss": hist[-1].get("loss") if hist else None,
                "first_loss": _first_loss(out / summary.get("folder", "train")),
                "mining": summary.get("mining"), "adaptation": adaptation}
    provenance = {
        "name": recipe.name,
        "recipe": f"streamdet train --recipe {recipe.name}{' --quick' if recipe.quick else ''}"
                  + (" --real DIR" if run.real_root is not None else "")
                  + (" --from MODEL" if summary.get("adaptation") else ""),
        "recipe_config": recipe.to_dict(),
        "data": data,
        "training": training,
        "thresholds_tuning": tuning,
        "evaluation": {k: v for k, v in figures.items() if k != "real"},
        "real_audio": _real_headline(figures.get("real")),
        "checkpoint_sha256": _sha256(run.data["best_path"]),
        "timings": run.timings,
        "software": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__, "git_commit": _git_commit()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    final = out / f"{recipe.name}.onnx"
    export_report = _export(best, final, recipe, thresholds, provenance, postprocess)
    det = streamdet.Detector(final, device="cpu", threads=run.threads)
    example_events = det.detect_file(out / "example.wav")
    report = {
        "model": str(final),
        "onnx_bytes": final.stat().st_size,
        "onnx_sha256": _sha256(final),
        "thresholds": {k: list(v) for k, v in thresholds.items()},
        "postprocess": postprocess,
        "figures": figures,
        "training": training,
        "history": hist,
        "timings": run.timings,
        "example": {"events_expected": [[e.label, e.onset, e.offset] for e in run.data["example_events"]],
                    "events_detected": [[e.label, round(e.onset, 3), round(e.offset or 0.0, 3)]
                                        for e in example_events]},
        "export": _jsonable(export_report),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    _plots(out, hist, figures["test"], labels, run.log)
    return report


def _real_headline(real: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The real-audio figures small enough for the model's metadata."""
    if real is None:
        return None
    sc, bg = real["scenes"], real["backgrounds"]["overall"]
    return {"scenes": {k: sc[k] for k in ("scenes", "classes", "event_f1_macro", "segment_f1_macro")}
            | {"per_class": {c: sc["per_class"][c] for c in sc["classes"]}},
            "backgrounds": {k: bg[k] for k in ("minutes", "false_alarms_per_minute", "flagged_share")},
            "steady_noise_events": real["steady"]["events"]}


def _per_class(postprocess: Mapping[str, Mapping[str, float]], labels: list[str]) -> dict[str, dict[str, float]]:
    """``{"min_duration": {label: s}, "min_gap": {label: s}}`` from ``{label: {"min_duration", "min_gap"}}``, resolved
    as the engine resolves a model's ``postprocess`` metadata."""
    from streamdet.model_metadata import POSTPROCESS_KEYS
    from streamdet.postprocess import resolve_seconds

    return {key: resolve_seconds(key, labels, postprocess) for key in POSTPROCESS_KEYS}


def _headline(s: Mapping[str, Any]) -> dict[str, Any]:
    return {k: s[k] for k in ("event_f1_macro", "event_f1_micro", "segment_f1_macro", "segment_f1_micro",
                              "segment_error_rate")}


def _first_loss(train_dir: Path) -> float | None:
    path = train_dir / "history.jsonl"
    if not path.exists():
        return None
    first = path.read_text().splitlines()[:1]
    return json.loads(first[0]).get("loss") if first else None


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    try:
        return json.loads(json.dumps(obj, default=str))
    except (TypeError, ValueError):
        return str(obj)


def _plots(out: Path, history: list, test: Mapping[str, Any], labels: list[str], log: _Log) -> None:
    """Loss / validation curves and per-class test F1 as PNGs (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no figures")
        return
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ep = [h["epoch"] for h in history]
    ax[0].plot(ep, [h.get("loss") for h in history], "o-", label="total")
    ax[0].plot(ep, [h.get("clip_loss") for h in history], "s--", label="clip BCE")
    ax[0].plot(ep, [h.get("frame_loss") for h in history], "^--", label="frame BCE")
    ax[0].set_xlabel("epoch")
    ax[0].set_title("training loss")
    ax[0].legend()
    if history and "val" in history[0]:
        for key, name in (("event_f1_macro", "event F1 (0.5/0.3)"), ("segment_f1_macro", "segment F1"),
                          ("clip_map", "clip mAP")):
            ax[1].plot(ep, [h["val"].get(key) for h in history], "o-", label=name)
        ax[1].set_ylim(0, 1)
        ax[1].set_title("validation (offline, default thresholds)")
        ax[1].set_xlabel("epoch")
        ax[1].legend()
    fig.tight_layout()
    fig.savefig(fig_dir / "training.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = np.arange(len(labels))
    pc = test["per_class"]
    ax.bar(x - 0.2, [pc[c]["event_f1"] or 0 for c in labels], 0.4, label="event F1 (200 ms)")
    ax.bar(x + 0.2, [pc[c]["segment_f1"] or 0 for c in labels], 0.4, label="segment F1 (1 s)")
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_title("held-out test, per class (engine, tuned thresholds)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(fig_dir / "test_per_class.png", dpi=90)
    plt.close(fig)

