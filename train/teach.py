"""Teach a model new sounds: ``streamdet train --from alerts --clips DIR --out my.onnx``.

``DIR`` holds ``LABEL/*.wav|flac|...`` recordings (at least :data:`MIN_CLIPS` per label, any length), optionally
``LABEL/*.tsv`` strong labels (``filename  onset  offset`` rows, seconds; otherwise the active region is found from
the signal) and an optional ``background/`` folder of recordings of the place the model will listen in.

How (docs/DESIGN.md's "minutes on a CPU" constraint decides it):

1. **check and split** - every file is read; unreadable, too short or silent recordings, labels with too few
   recordings and labels the model already has (unless ``replace``) are reported together as a
   :class:`TeachError`. Each label's recordings are split into training and validation by whole file.
2. **scenes** - the training recordings mixed into backgrounds (the ``background/`` recordings on half of the
   layers, procedural textures otherwise) at -5..20 dB, in synthetic rooms, with EQ, device colouration and
   distractors (:func:`streamdet.train.synth.synthesize_scene`): procedural ones and, with
   ``TeachConfig.place_distractors`` and a ``background/``, 0.5-3 s excerpts of its recordings placed louder than
   the bed (about half of them; off by default: measured in benchmarks/RESULTS.md); plus rehearsal scenes of
   the old classes (their procedural generators, when the model's classes have any) that hold no new sound.
3. **features** - the source model's backbone is frozen: its token-semantic head input is computed once per
   window of every scene and cached.
4. **head** - the head gains one row per new label (zero weights, a bias at the prior); only the new rows are
   trained, on the cached features, with frame-level binary cross-entropy; the step with the lowest validation
   loss is kept. The old rows and the backbone are not touched, so the old classes' scores are the source
   model's own (the report measures the largest difference): nothing to forget, no rehearsal loss needed.
5. **tune, export, verify, report** - the validation recordings, mixed into scenes the same way (other seeds),
   go through the exported model in the runtime engine; the new labels' thresholds, minimum durations and gaps
   are tuned on them (:func:`streamdet.train.thresholds.tune_postprocessing`), the old labels keep theirs. The
   final ONNX is verified against torch by the exporter, and a per-class report compares the source and the new
   model on the validation scenes.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamdet.audio_io import AUDIO_EXTENSIONS

__all__ = [
    "BACKGROUND_FOLDER",
    "MIN_CLIPS",
    "TeachConfig",
    "TeachError",
    "TeachFolder",
    "load_source",
    "read_teach_folder",
    "teach",
]

MIN_CLIPS = 5
"""Fewest recordings a new label may have (at least one goes to validation)."""
MIN_ACTIVE_SECONDS = 0.1
"""Shortest active sound a recording must hold."""
SILENT_PEAK_DBFS = -60.0
"""A recording whose peak stays below this is silent."""
BACKGROUND_FOLDER = "background"
"""The sub-folder of the clips folder that holds recordings of the place (no label)."""


class TeachError(ValueError):
    """Bad input to :func:`teach`: the message names every problem found (file and reason)."""


@dataclass
class TeachConfig:
    """The sizes of one teaching run (JSON-able; stored in the model's provenance)."""

    scenes_per_label: int = 120  # training scenes holding each new label
    rehearsal_scenes: int = 80  # training scenes of the old classes (and distractors) only: negatives for the new
    val_scenes_per_label: int = 16
    val_rehearsal_scenes: int = 12
    scene_seconds: float = 10.0
    val_share: float = 0.25  # of each label's recordings (whole files), at least one
    steps: int = 600
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-3
    eval_every: int = 25
    seed: int = 0
    last_stage: bool = False  # also train the last Swin stage (old classes distilled from the source model)
    stage_lr: float = 3e-4
    distill: float = 1.0
    varispeed: tuple[float, float] | None = (0.8, 1.25)  # training clips resampled (pitch and speed) by up to this
    place_distractors: bool = False  # excerpts of the background/ recordings also serve as distractors (RESULTS.md)
    hop: float = 0.5  # the engine's defaults for tuning and the report
    lookahead: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """As a plain dict."""
        return dataclasses.asdict(self)


@dataclass
class TeachFolder:
    """A checked clips folder: ``clips[label] = [(path, duration, segments)]`` and the background recordings."""

    root: Path
    clips: dict[str, list[tuple[Path, float, list[tuple[float, float]]]]]
    backgrounds: list[Path]
    problems: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """The new labels, in folder order."""
        return list(self.clips)


# ------------------------------------------------------------------------------------------------- the source model
def load_source(source: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """The torch model to start from and what its ONNX file says (``thresholds``, ``postprocess``, ``path``,
    ``window_seconds``): a bundled model name (``alerts``), a streamdet ``.onnx`` file (fp32), a streamdet training
    checkpoint or an official HTS-AT checkpoint."""
    from streamdet.models import CheckpointError, load_checkpoint
    from streamdet.models.onnx_import import load_onnx_model

    from streamdet.session import BUNDLED_DIR

    path = Path(source)
    bundled = BUNDLED_DIR / f"{source}.onnx"
    if not path.exists() and bundled.is_file():
        path = bundled
    if not path.exists():
        raise TeachError(f"--from {source}: no such model or checkpoint (a bundled name: "
                         f"{', '.join(p.stem for p in sorted(BUNDLED_DIR.glob('*.onnx')))})")
    info: dict[str, Any] = {"path": path, "thresholds": None, "postprocess": None, "window_seconds": None}
    try:
        if path.suffix.lower() == ".onnx":
            model = load_onnx_model(path)
            meta = onnx_metadata(path)
            info.update(thresholds=dict(meta.thresholds or {}), postprocess=dict(meta.postprocess or {}),
                        window_seconds=meta.window_samples / meta.sample_rate)
        else:
            model = load_checkpoint(path)
    except (CheckpointError, OSError, ValueError) as exc:
        raise TeachError(f"--from {source}: {exc}") from None
    if getattr(model, "model_type", None) != "htsat":
        raise TeachError(f"--from {source}: a {getattr(model, 'model_type', type(model).__name__)} model; teaching "
                         "new sounds needs an HTS-AT (its token-semantic head gains the new rows)")
    if info["window_seconds"] is None:
        info["window_seconds"] = model.native_window_samples / model.sample_rate
    return model.float().eval(), info


# ------------------------------------------------------------------------------------------------- the clips folder
def read_teach_folder(root: str | os.PathLike[str], sample_rate: int, known_labels: Sequence[str], *,
                      replace: bool = False) -> TeachFolder:
    """Read and check every recording under ``root``; raises :class:`TeachError` listing all problems."""
    from streamdet.errors import short_error

    from .datasets import load_audio
    from .synth.core import active_segments

    root = Path(root)
    if not root.is_dir():
        raise TeachError(f"--clips {root}: not a folder")
    exts = {e.lower() for e in AUDIO_EXTENSIONS}
    problems: list[str] = []
    clips: dict[str, list[tuple[Path, float, list[tuple[float, float]]]]] = {}
    backgrounds: list[Path] = []
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        if folder.name == BACKGROUND_FOLDER:
            for p in files:
                try:
                    load_audio(p, sample_rate, duration=0.1)
                    backgrounds.append(p)
                except Exception as exc:  # soundfile raises several types
                    problems.append(f"{p}: unreadable ({short_error(exc)})")
            continue
        label = folder.name
        if label in known_labels and not replace:
            problems.append(f"{folder}: the model already has the label {label!r} (add --replace to train it anew "
                            "from these recordings)")
            continue
        strong = _read_strong_labels(folder, problems)
        good = []
        for p in files:
            try:
                x = load_audio(p, sample_rate)
            except Exception as exc:
                problems.append(f"{p}: unreadable ({short_error(exc)})")
                continue
            duration = len(x) / sample_rate
            peak = float(np.max(np.abs(x))) if len(x) else 0.0
            if peak <= 10 ** (SILENT_PEAK_DBFS / 20):
                problems.append(f"{p}: silent (peak {20 * np.log10(peak + 1e-12):.0f} dBFS)")
                continue
            if p.name in strong:
                segs = [(max(0.0, a), min(duration, b)) for a, b in strong[p.name] if min(duration, b) > a]
            else:
                segs = active_segments(x, sample_rate, -35.0, 0.3)
            active = sum(b - a for a, b in segs)
            if active < MIN_ACTIVE_SECONDS:
                problems.append(f"{p}: too short ({active:.2f} s of sound; at least {MIN_ACTIVE_SECONDS} s)")
                continue
            good.append((p, duration, segs))
        if len(good) < MIN_CLIPS:
            problems.append(f"{folder}: {len(good)} usable recording(s) of {label!r}; at least {MIN_CLIPS} are needed "
                            "(some are held out for validation)")
            continue
        clips[label] = good
    if not clips and not problems:
        problems.append(f"--clips {root}: no LABEL/ folders with recordings ({', '.join(sorted(exts))})")
    if problems:
        raise TeachError("\n".join(problems))
    return TeachFolder(root, clips, backgrounds)


def _read_strong_labels(folder: Path, problems: list[str]) -> dict[str, list[tuple[float, float]]]:
    """``{file name: [(onset, offset)]}`` from the folder's ``*.tsv`` files (``filename onset offset [label]``)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for tsv in sorted(folder.glob("*.tsv")):
        with open(tsv, newline="", encoding="utf-8", errors="replace") as f:
            for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
                if not row or row[0] in ("filename", "file") or row[0].startswith("#"):
                    continue
                try:
                    onset, offset = float(row[1]), float(row[2])
                    if not 0 <= onset < offset:
                        raise ValueError
                except (IndexError, ValueError):
                    problems.append(f"{tsv}:{n}: expected 'filename<TAB>onset<TAB>offset' with 0 <= onset < offset")
                    continue
                out.setdefault(Path(row[0]).name, []).append((onset, offset))
    return out


def split_clips(folder: TeachFolder, val_share: float, seed: int) -> dict[str, dict[str, list]]:
    """Per label, whole recordings into ``train`` and ``val`` (at least one each), by a hash of their names."""
    out: dict[str, dict[str, list]] = {}
    for label, items in folder.clips.items():
        ranked = sorted(items, key=lambda it: hashlib.sha256(f"{seed}:{it[0].name}".encode()).hexdigest())
        n_val = min(len(ranked) - 1, max(1, round(val_share * len(ranked))))
        out[label] = {"train": ranked[n_val:], "val": ranked[:n_val]}
    return out


# ---------------------------------------------------------------------------------------------------------- scenes
class _PlaceExcerpts:
    """Short excerpts (0.5-3 s) of the ``background/`` recordings, served as real distractors: sounds of the place
    that are not the new labels, placed over the bed at the distractor levels. The recordings are dealt into
    ``kinds`` groups (``__place0__``, ...), each one distractor kind beside the procedural ones, so that about
    half of the distractors come from the place."""

    def __init__(self, paths: Sequence[Path], sample_rate: int, kinds: int = 4) -> None:
        paths = sorted(paths)
        self.sample_rate = sample_rate
        self.groups = {f"__place{k}__": list(paths[k::kinds]) for k in range(min(kinds, len(paths)))}

    def sample(self, label: str, rng: np.random.Generator) -> Any:
        """One excerpt of a recording of group ``label``; its whole length is its active segment."""
        import soundfile as sf

        from .datasets import load_audio
        from .synth.core import Sound, choose, normalize

        path = choose(rng, self.groups[label])
        duration = float(sf.info(str(path)).duration)
        length = min(duration, float(rng.uniform(0.5, 3.0)))
        start = float(rng.uniform(0.0, max(0.0, duration - length)))
        x = load_audio(path, self.sample_rate, start, length)
        return Sound(normalize(x), [(0.0, len(x) / self.sample_rate)], {"source": "place", "path": str(path)})


class _SegmentClips:
    """A :class:`ClipLibrary` whose clips carry the segments checked by :func:`read_teach_folder`; with
    ``varispeed=(lo, hi)`` 70 % of the draws are resampled by a factor in that range (pitch and speed together);
    with ``place``, its excerpt groups are labels too (outside every scene's classes: distractors)."""

    def __init__(self, items: Mapping[str, Sequence[tuple[Path, float, list]]], sample_rate: int,
                 varispeed: tuple[float, float] | None = None, place: _PlaceExcerpts | None = None) -> None:
        from .synth.scenes import ClipLibrary

        self.varispeed = varispeed
        self.place = place

        self._lib = ClipLibrary([], sample_rate)
        self._lib.files = {label: [p for p, _, _ in its] for label, its in items.items()}
        self._segments = {p: segs for its in items.values() for p, _, segs in its}
        self.sample_rate = sample_rate

    @property
    def labels(self) -> list[str]:
        return self._lib.labels + (sorted(self.place.groups) if self.place is not None else [])

    def place_only(self) -> _SegmentClips | None:
        """The place's excerpts alone (for rehearsal scenes, which must not hold the new sounds); None without."""
        return _SegmentClips({}, self.sample_rate, None, self.place) if self.place is not None else None

    def sample(self, label: str, rng: np.random.Generator) -> Any:
        from .datasets import load_audio
        from .synth.core import Sound, choose, normalize

        if self.place is not None and label in self.place.groups:
            return self.place.sample(label, rng)
        path = choose(rng, self._lib.files[label])
        x, segs = load_audio(path, self.sample_rate), list(self._segments[path])
        info: dict[str, Any] = {"source": "clip", "path": str(path)}
        if self.varispeed and rng.random() < 0.7:  # the same sound a little higher and faster, or lower and slower
            import soxr

            r = float(np.exp(rng.uniform(np.log(self.varispeed[0]), np.log(self.varispeed[1]))))
            x = soxr.resample(x, self.sample_rate * r, self.sample_rate).astype(np.float32)
            segs = [(a / r, b / r) for a, b in segs]
            info["varispeed"] = round(r, 3)
        return Sound(normalize(x), segs, info)


_scene_state: dict[str, Any] = {}


def _scene_job(job: tuple[int, str, int]) -> tuple[np.ndarray, list]:
    seed, kind, i = job
    from .synth import synthesize_scene

    config, clips = _scene_state[kind]
    scene = synthesize_scene([seed, i], config, clips)
    return scene.audio, [(e.label, e.onset, e.offset) for e in scene.events]


def _scene_configs(new_labels: Sequence[str], old_labels: Sequence[str], sample_rate: int, seconds: float,
                   backgrounds: Sequence[Path], bg_dir: Path | None) -> dict[str, Any]:
    """``new``: scenes of the new recordings (+ procedural distractors); ``old``: rehearsal scenes."""
    from .synth import SceneConfig
    from .synth.registry import EVENT_GENERATORS

    common: dict[str, Any] = {"sample_rate": sample_rate, "duration": seconds, "snr_db": (-5.0, 20.0),
                              "capture_prob": 0.15}
    if backgrounds and bg_dir is not None:
        common.update(background_folders=(str(bg_dir),), background_folder_prob=0.5)
    old_gen = tuple(label for label in old_labels if label in EVENT_GENERATORS)
    return {
        "new": SceneConfig(labels=tuple(new_labels), events=(1, 3), distractors=(0, 2), **common),
        "old": SceneConfig(labels=old_gen or ("__none__",), events=(0, 3) if old_gen else (0, 0),
                           distractors=(1, 3), **common),
    }


def _make_scenes(configs: Mapping[str, Any], clips: Any, counts: Mapping[str, int], seed: int, workers: int
                 ) -> list[tuple[np.ndarray, list]]:
    """Scenes of each kind (``counts[kind]``), in memory; identical for any number of ``workers``."""
    _scene_state.clear()
    _scene_state.update({kind: (cfg, clips if kind == "new" else clips.place_only())
                         for kind, cfg in configs.items()})
    jobs = [(seed + (0 if kind == "new" else 7919), kind, i) for kind, n in counts.items() for i in range(n)]
    if workers <= 1 or len(jobs) < 8:
        return [_scene_job(j) for j in jobs]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(_scene_job, jobs, chunksize=4)


# -------------------------------------------------------------------------------------------------------- features
def stage_input(model: Any, waveform: Any) -> Any:
    """HTS-AT's tokens before its last Swin stage ``[B, tokens, channels]`` for ``waveform [B, N]`` (no grad)."""
    import torch

    with torch.no_grad():
        x = model.patch_embed(model.to_image(model.normalize_features(model.frontend(waveform))))
        for layer in model.layers[:-1]:
            x = layer(x)
        return x


def stage_logits(model: Any, tokens: Any) -> Any:
    """Frame logits ``[B, steps, C]`` from the tokens before the last stage (the rest of HTS-AT's forward)."""
    x = model.tscam_input(model.norm(model.layers[-1](tokens)))
    return model.tscam_conv(x).flatten(2).transpose(1, 2)


def head_features(model: Any, waveform: Any) -> Any:
    """HTS-AT's token-semantic head input ``[B, channels, freq, steps]`` for ``waveform [B, N]`` (no grad)."""
    import torch

    with torch.no_grad():
        x = model.normalize_features(model.frontend(waveform))
        return model.tscam_input(model.forward_tokens(model.to_image(x)))


def _scene_features(model: Any, scenes: Sequence[tuple[np.ndarray, list]], labels: Sequence[str],
                    window_seconds: float, features: Callable[[Any, Any], Any] = head_features, batch: int = 32
                    ) -> tuple[Any, Any]:
    """Cached ``features(model, windows)`` (float16; default the head input ``[W, ch, f, steps]``) and frame
    targets ``[W, steps, C]`` of every window (hop half a window) of every scene."""
    import torch

    from .datasets import frame_targets

    sr = model.sample_rate
    win = round(window_seconds * sr)
    steps = model.steps_for(win)
    hop = window_seconds / 2
    wins, targets = [], []
    for audio, events in scenes:
        from .datasets import StrongEvent

        evs = [StrongEvent(*e) for e in events]
        n_starts = max(1, int((len(audio) / sr - window_seconds) / hop) + 1)
        for k in range(n_starts):
            s = round(k * hop * sr)
            w = np.zeros(win, dtype=np.float32)
            piece = audio[s:s + win]
            w[:len(piece)] = piece
            wins.append(w)
            targets.append(frame_targets(evs, labels, k * hop, window_seconds, steps))
    feats = []
    for i in range(0, len(wins), batch):
        feats.append(features(model, torch.from_numpy(np.stack(wins[i:i + batch]))).half())
    return torch.cat(feats), torch.from_numpy(np.stack(targets))


# ------------------------------------------------------------------------------------------------------------ head
def _train_rows(model: Any, n_old: int, train: tuple[Any, Any], val: tuple[Any, Any], cfg: TeachConfig,
                log: Callable[[str], None]) -> dict[str, Any]:
    """Train the new rows of ``model.tscam_conv`` (those after ``n_old``) on cached features; keeps the rows of
    the step with the lowest validation loss."""
    import torch
    import torch.nn.functional as F

    conv = model.tscam_conv
    weight = conv.weight[n_old:].detach().clone().requires_grad_(True)
    bias = conv.bias[n_old:].detach().clone().requires_grad_(True)
    x_tr, y_tr = train[0], train[1][..., n_old:]
    x_va, y_va = val[0], val[1][..., n_old:]
    pos = float(y_tr.mean())
    pos_weight = torch.full((y_tr.shape[-1],), max(1.0, min(10.0, (1 - pos) / max(pos, 1e-3) / 2)))
    opt = torch.optim.AdamW([weight, bias], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)

    def loss_of(x: Any, y: Any) -> Any:
        logits = F.conv2d(x.float(), weight, bias, padding=conv.padding).flatten(2).transpose(1, 2)
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)

    best = (float("inf"), -1, weight.detach().clone(), bias.detach().clone())
    history = []
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(x_tr), (min(cfg.batch_size, len(x_tr)),), generator=gen)
        loss = loss_of(x_tr[idx], y_tr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            with torch.no_grad():
                val_loss = float(loss_of(x_va, y_va))
            history.append({"step": step, "train_loss": round(float(loss.detach()), 4), "val_loss": round(val_loss, 4)})
            if val_loss < best[0]:
                best = (val_loss, step, weight.detach().clone(), bias.detach().clone())
    with torch.no_grad():
        conv.weight[n_old:] = best[2]
        conv.bias[n_old:] = best[3]
    log(f"head: {cfg.steps} steps on {len(x_tr)} windows, best validation loss {best[0]:.4f} at step {best[1]}")
    return {"best_step": best[1], "best_val_loss": round(best[0], 4), "history": history,
            "train_windows": len(x_tr), "val_windows": len(x_va)}


def _train_stage(model: Any, n_old: int, train: tuple[Any, Any], val: tuple[Any, Any], cfg: TeachConfig,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Train the last Swin stage, the final norm and the new head rows on cached stage inputs; the old classes'
    logits are distilled from the source model's (rehearsal: binary cross-entropy against its probabilities on the
    same windows), the old head rows stay fixed. Keeps the weights of the step with the lowest validation loss."""
    import copy

    import torch
    import torch.nn.functional as F

    conv = model.tscam_conv
    parts = [model.layers[-1], model.norm, conv]
    x_tr, y_tr = train[0], train[1][..., n_old:]
    x_va, y_va = val[0], val[1][..., n_old:]

    def batched(x: Any) -> Any:
        with torch.no_grad():
            return torch.cat([stage_logits(model, x[i:i + 256].float()) for i in range(0, len(x), 256)])

    teacher_tr, teacher_va = torch.sigmoid(batched(x_tr)[..., :n_old]), torch.sigmoid(batched(x_va)[..., :n_old])
    pos = float(y_tr.mean())
    pos_weight = torch.full((y_tr.shape[-1],), max(1.0, min(10.0, (1 - pos) / max(pos, 1e-3) / 2)))
    opt = torch.optim.AdamW([{"params": [p for m in parts[:2] for p in m.parameters()], "lr": cfg.stage_lr},
                             {"params": list(conv.parameters()), "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)

    def losses(x: Any, y: Any, teacher: Any) -> tuple[Any, Any]:
        logits = stage_logits(model, x.float())
        new = F.binary_cross_entropy_with_logits(logits[..., n_old:], y, pos_weight=pos_weight)
        old = F.binary_cross_entropy_with_logits(logits[..., :n_old], teacher) if n_old else logits.sum() * 0
        return new, old

    def snapshot() -> list[dict[str, Any]]:
        return [copy.deepcopy(m.state_dict()) for m in parts]

    best: tuple[float, int, list] = (float("inf"), 0, snapshot())
    history = []
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(x_tr), (min(cfg.batch_size, len(x_tr)),), generator=gen)
        new, old = losses(x_tr[idx], y_tr[idx], teacher_tr[idx])
        loss = new + cfg.distill * old
        opt.zero_grad()
        loss.backward()
        conv.weight.grad[:n_old] = 0
        conv.bias.grad[:n_old] = 0
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            with torch.no_grad():
                vs = [losses(x_va[i:i + 256], y_va[i:i + 256], teacher_va[i:i + 256]) for i in range(0, len(x_va), 256)]
                v_new = float(sum(a * len(x_va[i:i + 256]) for (a, _), i in zip(vs, range(0, len(x_va), 256),
                                                                                  strict=True)) / len(x_va))
                v_old = float(sum(b * len(x_va[i:i + 256]) for (_, b), i in zip(vs, range(0, len(x_va), 256),
                                                                                  strict=True)) / len(x_va))
            val_loss = v_new + cfg.distill * v_old
            history.append({"step": step, "train_loss": round(float(loss.detach()), 4), "val_loss": round(val_loss, 4),
                            "val_new": round(v_new, 4), "val_distill": round(v_old, 4)})
            if val_loss < best[0]:
                best = (val_loss, step, snapshot())
    for m, state in zip(parts, best[2], strict=True):
        m.load_state_dict(state)
    log(f"last stage + head: {cfg.steps} steps on {len(x_tr)} windows, best validation loss {best[0]:.4f} at step "
        f"{best[1]}")
    return {"best_step": best[1], "best_val_loss": round(best[0], 4), "history": history,
            "train_windows": len(x_tr), "val_windows": len(x_va), "trained": "last stage, norm, new head rows"}


def grow_head(model: Any, new_labels: Sequence[str], replace: Sequence[str] = ()) -> int:
    """Give ``model`` (HTS-AT) one head row per new label after its old rows, zero weights and a bias at a 2 %
    prior; ``replace``d labels are dropped from the old rows first. Returns the number of old rows kept."""
    import torch
    from torch import nn

    keep = [i for i, label in enumerate(model.labels) if label not in set(replace)]
    old = model.tscam_conv
    conv = nn.Conv2d(old.in_channels, len(keep) + len(new_labels), old.kernel_size, padding=old.padding)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(float(np.log(0.02 / 0.98)))
        conv.weight[: len(keep)] = old.weight[keep]
        conv.bias[: len(keep)] = old.bias[keep]
    model.tscam_conv = conv
    model.labels = [model.labels[i] for i in keep] + list(new_labels)
    model.config.num_classes = len(model.labels)
    return len(keep)


# ---------------------------------------------------------------------------------------------------------- engine
def _write_scenes(scenes: Sequence[tuple[np.ndarray, list]], out_dir: Path, sample_rate: int) -> list[Any]:
    """Write validation scenes as WAV files; returns their :class:`AudioRecord` s."""
    import soundfile as sf

    from .datasets import AudioRecord, StrongEvent

    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (audio, events) in enumerate(scenes):
        path = out_dir / f"val_{i:04d}.wav"
        sf.write(path, audio, sample_rate, subtype="PCM_16")
        evs = tuple(StrongEvent(*e) for e in events)
        records.append(AudioRecord(path, len(audio) / sample_rate, tuple(dict.fromkeys(e.label for e in evs)), evs))
    return records


def _tracks(model_path: Path, records: Sequence[Any], cfg: TeachConfig, threads: int) -> dict[str, Any]:
    import streamdet

    det = streamdet.Detector(model_path, device="cpu", hop=cfg.hop, lookahead=cfg.lookahead, threads=threads)
    out = {}
    for r in records:
        tr = det.score_track(r.path)
        out[r.path.name] = (tr.scores, tr.frame_seconds, float(r.duration))
    return out


def _events_of(tracks: Mapping[str, Any], labels: Sequence[str], model_path: Path) -> dict[str, list]:
    """Events of score tracks under the model's own post-processing (its thresholds and postprocess metadata)."""
    from .thresholds import tracks_to_events

    post = onnx_metadata(model_path).default_postprocessing()
    if list(post.labels) != list(labels):
        raise ValueError(f"{model_path}: labels {list(post.labels)} are not {list(labels)}")
    return tracks_to_events(tracks, post)


# ------------------------------------------------------------------------------------------------------------ teach
def teach(
    source: str | os.PathLike[str],
    clips_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    replace: bool = False,
    config: TeachConfig | None = None,
    threads: int | None = None,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
    keep_work: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Add the labels of ``clips_dir`` to the model ``source`` and write the verified ONNX model ``out``.

    Returns the report (also written next to ``out`` as ``<stem>.report.json``): the per-class validation figures
    of the source and the new model, the split, the timings. Raises :class:`TeachError` for bad input.
    ``keep_work``: a folder for the validation scenes and intermediate models (default: a temporary one).
    """
    import torch

    from .loop import default_threads

    cfg = config or TeachConfig()
    say = log or (lambda _msg: None)
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise TeachError(f"--out {out}: the new model is one ONNX file; give a name ending in .onnx")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    threads = threads or default_threads()
    workers = workers or default_threads()
    torch.set_num_threads(threads)
    model, src = load_source(source)
    old_labels = list(model.labels)
    folder = read_teach_folder(clips_dir, model.sample_rate, old_labels, replace=replace)
    new_labels = folder.labels
    replaced = [label for label in new_labels if label in old_labels]
    split = split_clips(folder, cfg.val_share, cfg.seed)
    say(f"{len(new_labels)} new label(s) from {folder.root}: "
        + ", ".join(f"{label} ({len(s['train'])} training + {len(s['val'])} validation recordings)"
                    for label, s in split.items())
        + f"; {len(folder.backgrounds)} background recording(s)")
    t = _lap(timings, "check", t0)

    work_ctx = tempfile.TemporaryDirectory(prefix="streamdet-teach-") if keep_work is None else None
    work = Path(keep_work) if keep_work is not None else Path(work_ctx.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    try:
        bg_dir = None
        if folder.backgrounds:
            bg_dir = work / "background"
            bg_dir.mkdir(exist_ok=True)
            for i, p in enumerate(folder.backgrounds):
                link = bg_dir / f"{i:04d}{p.suffix.lower()}"
                if not link.exists():
                    link.symlink_to(p.resolve())
        kept_old = [label for label in old_labels if label not in replaced]
        configs = _scene_configs(new_labels, kept_old, model.sample_rate, cfg.scene_seconds, folder.backgrounds,
                                 bg_dir)
        place = (_PlaceExcerpts(folder.backgrounds, model.sample_rate)
                 if folder.backgrounds and cfg.place_distractors else None)
        sides = {side: _SegmentClips({label: s[side] for label, s in split.items()}, model.sample_rate,
                                     cfg.varispeed if side == "train" else None, place) for side in ("train", "val")}
        train_scenes = _make_scenes(configs, sides["train"], {"new": cfg.scenes_per_label * len(new_labels),
                                                              "old": cfg.rehearsal_scenes}, cfg.seed, workers)
        val_scenes = _make_scenes(configs, sides["val"], {"new": cfg.val_scenes_per_label * len(new_labels),
                                                          "old": cfg.val_rehearsal_scenes}, cfg.seed + 1000, workers)
        say(f"scenes: {len(train_scenes)} training, {len(val_scenes)} validation ({cfg.scene_seconds:g} s each)")
        t = _lap(timings, "scenes", t)

        n_old = grow_head(model, new_labels, replaced)
        labels = list(model.labels)
        window_seconds = float(src["window_seconds"])
        features = stage_input if cfg.last_stage else head_features
        train_feats = _scene_features(model, train_scenes, labels, window_seconds, features)
        val_feats = _scene_features(model, val_scenes, labels, window_seconds, features)
        say(f"features: {len(train_feats[0]) + len(val_feats[0])} windows of {window_seconds:g} s through the frozen "
            "backbone")
        t = _lap(timings, "features", t)
        head = (_train_stage if cfg.last_stage else _train_rows)(model, n_old, train_feats, val_feats, cfg, say)
        t = _lap(timings, "head", t)

        records = _write_scenes(val_scenes, work / "val", model.sample_rate)
        report = _tune_export_report(model, src, records, labels, new_labels, kept_old, replaced, folder, split,
                                     cfg, head, work, out, threads, say, timings, t, t0)
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    return report


def _tune_export_report(model: Any, src: Mapping[str, Any], records: Sequence[Any], labels: list[str],
                        new_labels: list[str], kept_old: list[str], replaced: list[str], folder: TeachFolder,
                        split: Mapping[str, Mapping[str, list]], cfg: TeachConfig, head: Mapping[str, Any],
                        work: Path, out: Path, threads: int, say: Callable[[str], None],
                        timings: dict[str, float], t: float, t0: float) -> dict[str, Any]:
    """Tune the new labels on the validation scenes, export the final model and compare it with the source."""
    from streamdet.export import to_onnx

    from .loop import ground_truth, score_events
    from .thresholds import tune_postprocessing

    untuned = work / "untuned.onnx"
    to_onnx(model, untuned, window_seconds=src["window_seconds"], verify=False)
    tracks = _tracks(untuned, records, cfg, threads)
    gt, durations = ground_truth(records, labels)
    cols = [labels.index(label) for label in new_labels]
    new_tracks = {k: (s[:, cols], fs, d) for k, (s, fs, d) in tracks.items()}
    thr_new, post_new, tuning = tune_postprocessing(new_tracks, gt, new_labels)
    thresholds = {k: tuple(v) for k, v in (src["thresholds"] or {}).items() if k in kept_old} | thr_new
    postprocess = {k: dict(v) for k, v in (src["postprocess"] or {}).items() if k in kept_old} | post_new
    t = _lap(timings, "tuning", t)

    source_onnx = src["path"] if Path(src["path"]).suffix.lower() == ".onnx" else work / "source.onnx"
    if source_onnx == work / "source.onnx":
        from streamdet.models import load_checkpoint

        to_onnx(load_checkpoint(src["path"]), source_onnx, window_seconds=src["window_seconds"], verify=False)
    provenance = {
        "name": out.stem,
        "taught": {
            "from": Path(src["path"]).name,
            "new_labels": new_labels,
            "replaced": replaced,
            "recordings": {label: {side: [p.name for p, _, _ in items] for side, items in s.items()}
                           for label, s in split.items()},
            "backgrounds": len(folder.backgrounds),
            "method": "frozen backbone and old head rows; new token-semantic head rows trained on cached features "
                      "of scenes mixing the training recordings into backgrounds; new labels' thresholds and "
                      "post-processing tuned on scenes of the validation recordings",
            "config": cfg.to_dict(),
            "head": {k: v for k, v in head.items() if k != "history"},
        },
    }
    report_exp = to_onnx(model, out, window_seconds=src["window_seconds"], thresholds=thresholds,
                         postprocess=postprocess, provenance=provenance)
    t = _lap(timings, "export", t)

    old_tracks = _tracks(Path(source_onnx), records, cfg, threads)
    new_final = _tracks(out, records, cfg, threads)
    diff = max((float(np.max(np.abs(old_tracks[k][0][:, [list(_labels_of(source_onnx)).index(label)
                                                            for label in kept_old]]
                                    - new_final[k][0][:, [labels.index(label) for label in kept_old]])))
                for k in tracks if kept_old), default=0.0)
    before = score_events(_events_of(old_tracks, _labels_of(source_onnx), Path(source_onnx)), gt, durations,
                          _labels_of(source_onnx))
    after = score_events(_events_of(new_final, labels, out), gt, durations, labels)
    _lap(timings, "report", t)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    classes = {}
    for label in labels:
        n_events = sum(1 for r in records for e in (r.events or ()) if e.label == label)
        classes[label] = {
            "new": label in new_labels,
            "validation_events": n_events,
            "before": before["per_class"].get(label) if label not in new_labels else None,
            "after": after["per_class"][label],
            "thresholds": list(thresholds.get(label, (0.5, 0.3))),
            "postprocess": postprocess.get(label),
        }
    report = {
        "model": str(out),
        "from": str(src["path"]),
        "labels": labels,
        "new_labels": new_labels,
        "classes": classes,
        "old_scores_max_abs_diff": diff,
        "validation_scenes": len(records),
        "tuning": tuning,
        "head": head,
        "timings": timings,
        "export": {"bytes": report_exp.bytes, "sha256": report_exp.sha256,
                   "verification": report_exp.verification.to_dict() if report_exp.verification else None},
    }
    out.with_suffix(".report.json").write_text(json.dumps(report, indent=1, default=str))
    say(f"done in {timings['total_s']:.0f} s: {out}")
    return report


def _lap(timings: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    timings[f"{name}_s"] = round(now - since, 1)
    return now


def _labels_of(onnx_path: str | os.PathLike[str]) -> list[str]:
    return list(onnx_metadata(onnx_path).labels)


def onnx_metadata(path: str | os.PathLike[str]) -> Any:
    """The :class:`~streamdet.model_metadata.ModelMetadata` of an ONNX file."""
    import onnx

    from streamdet.model_metadata import ModelMetadata

    proto = onnx.load(str(path), load_external_data=False)
    return ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})


def report_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """The per-class report as text rows: class, new/old, validation events, event F1 and segment F1 before and
    after (``-`` where a class was not in the source model or has no validation events)."""

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}"

    rows = []
    for label, c in report["classes"].items():
        b, a = c["before"] or {}, c["after"]
        rows.append([label, "new" if c["new"] else "old", str(c["validation_events"]), f(b.get("event_f1")),
                     f(a.get("event_f1")), f(b.get("segment_f1")), f(a.get("segment_f1"))])
    return rows

