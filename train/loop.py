"""The training loop for HTS-AT and AST: weak + strong BCE, mixup, SpecAugment, AdamW, EMA, checkpoints, metrics.

Loss per batch::

    clip_weight  * BCE(clip logits, clip targets)                          (every example)
  + frame_weight * BCE(frame logits, frame targets), masked to strong examples

The clip logits are the model's ``logits`` (HTS-AT: the mean of the frame logits over time); the frame logits are
the model's ``ModelOutput.frame_logits`` (the token-semantic head before its sigmoid), so the framewise loss is
computed on logits (stable). A model without a frame head (official AST) gives its clip logits as one step and
trains on the clip loss only.

Optimiser: AdamW (no weight decay on the parameters the model names in ``no_weight_decay()``: biases, norms,
position tables and tokens), linear warm-up then cosine
decay, gradient-norm clipping, and an exponential moving average of the weights (EMA; buffers such as ``bn0``'s
running statistics are copied), which is what validation, ``best.pt`` and export use.

Determinism and resume: every random choice comes from the seed and a counter (the window plan of epoch ``e``
from ``default_rng([seed, e])``; augmentation and drop-path of step ``s`` from generators seeded by ``(seed,
s)``), and ``last.pt`` is written after every epoch with the model, EMA, optimiser and history, so
``resume=True`` continues exactly where an interrupted run stopped (same threads, same device).

Validation each epoch runs the EMA model over the validation files on the engine's windows and stitches them with
the engine's own code (:func:`offline_tracks`, :func:`streamdet.stitching.stitch_windows`), turns the score tracks
into events with the engine's tracker (:mod:`streamdet.train.thresholds`) and scores them with
:mod:`streamdet.metrics`: event-based F1 (200 ms collar), segment-based F1 (1 s), clip mAP and frame mAP
(threshold-free; what selects ``best.pt`` by default).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamdet.postprocess import PostProcessing
from streamdet.scores import ScoreTrack
from streamdet.stitching import Timeline, stitch_windows

from .augment import mixup, random_gain, scaled_specaugment, spec_augment
from .thresholds import TrackLike, as_track, tracks_to_events
from .torch_data import (
    Batch,
    FeatureBank,
    RecordWindows,
    WindowDataset,
    balanced_weights,
    collate,
    plan_windows,
)

__all__ = [
    "EMA",
    "TrainConfig",
    "Trainer",
    "distill_loss",
    "forward_logits",
    "frame_map",
    "lr_at",
    "offline_tracks",
    "resolve_device",
    "sed_loss",
    "validate",
]


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (JSON-able; stored in checkpoints and provenance)."""

    epochs: int = 10
    steps_per_epoch: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_steps: int = 200
    grad_clip: float = 3.0
    ema_decay: float = 0.999
    clip_weight: float = 1.0
    frame_weight: float = 1.0
    soft_targets: bool = True
    balanced: bool = True
    mixup_prob: float = 0.5
    mixup_mode: str = "power"  # "power" (dB log-mel, union targets) or "linear"
    mixup_lam: tuple[float, float] = (0.3, 0.7)
    gain_db: tuple[float, float] = (-10.0, 10.0)
    specaugment: bool = True
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    num_workers: int = 0
    val_hop: float = 0.5
    val_lookahead: float = 0.0
    select_metric: str = "frame_map"  # a validation figure (validate()); frame_map needs no thresholds
    log_every: int = 25
    # learning without forgetting: weight of the BCE towards a frozen teacher's clip and frame probabilities (only
    # when the Trainer is given a teacher, e.g. the model a fine-tune starts from)
    distill_weight: float = 0.0

    def __post_init__(self) -> None:
        self.mixup_lam = tuple(self.mixup_lam)
        self.gain_db = tuple(self.gain_db)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``total_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.total_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


class EMA:
    """Exponential moving average of a model's parameters (buffers copied), with the usual warm-up of the decay."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_p = list(self.module.parameters())
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, [p.detach() for p in model.parameters()], alpha=1 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


# ----------------------------------------------------------------------------------------------------- forward/loss
def _feature_kind(model: nn.Module) -> str:
    """``"db"``: HTS-AT log-mel in dB before ``bn0``; ``"normalized"``: AST's normalised fbank (the model says)."""
    return getattr(model, "feature_kind", "normalized")


def forward_logits(model: nn.Module, features: torch.Tensor, normalized: bool = False) -> tuple[Any, torch.Tensor]:
    """Run ``model`` on front-end features; return ``(ModelOutput, frame_logits [B, steps, C])``.

    HTS-AT: ``features`` are the dB log-mel (``normalized=True``: already through ``bn0``). The frame logits are the
    model's ``frame_logits`` (a model without a frame head gives its clip logits as one step).
    """
    out = model.forward_from_features(features, normalized=normalized)
    frame_logits = out.frame_logits if out.frame_logits is not None else out.logits[:, None, :]
    return out, frame_logits


def sed_loss(
    clip_logits: torch.Tensor,
    frame_logits: torch.Tensor,
    batch_clip: torch.Tensor,
    batch_frame: torch.Tensor,
    strong: torch.Tensor,
    clip_weight: float = 1.0,
    frame_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipwise BCE on every example plus framewise BCE averaged over the strong examples only."""
    clip_loss = F.binary_cross_entropy_with_logits(clip_logits, batch_clip)
    if frame_weight > 0 and frame_logits.shape[1] == batch_frame.shape[1] and bool(strong.any()):
        per = F.binary_cross_entropy_with_logits(frame_logits, batch_frame, reduction="none").mean(dim=(1, 2))
        mask = strong.to(per.dtype)
        frame_loss = (per * mask).sum() / mask.sum()
    else:
        frame_loss = clip_logits.new_zeros(())
    loss = clip_weight * clip_loss + frame_weight * frame_loss
    return loss, {"loss": loss.item(), "clip_loss": clip_loss.item(), "frame_loss": frame_loss.item()}


def distill_loss(
    clip_logits: torch.Tensor, frame_logits: torch.Tensor, teacher_clip: torch.Tensor, teacher_frame: torch.Tensor
) -> torch.Tensor:
    """Learning without forgetting (Li & Hoiem, 2016) for a sound-event model: binary cross-entropy of the student's
    clip and frame logits towards the teacher's clip and frame probabilities (soft targets)."""
    loss = F.binary_cross_entropy_with_logits(clip_logits, torch.sigmoid(teacher_clip))
    if frame_logits.shape == teacher_frame.shape:
        loss = loss + F.binary_cross_entropy_with_logits(frame_logits, torch.sigmoid(teacher_frame))
    return loss


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on every trainable parameter but those ``model.no_weight_decay()`` names."""
    exempt = model.no_weight_decay()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in exempt:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def window_predictions(model: nn.Module, bank: FeatureBank, index: int, timeline: Timeline,
                       batch_size: int = 64) -> tuple[np.ndarray, int]:
    """Framewise probabilities ``[K, steps, C]`` of the engine's windows ``k = 1..K`` over file ``index`` and its
    length in samples (window ``k`` covers ``[k*hop - W, k*hop)`` samples; its features are cropped from the
    cached log-mel, so starts are rounded to the front-end's hop)."""
    spec = bank.spec
    n = round(bank.records[index].duration * spec.sample_rate)
    K = timeline.windows_at_end(n)
    starts = [(k * timeline.hop - spec.window_samples) / spec.sample_rate for k in range(1, K + 1)]
    device = next(model.parameters()).device
    out = []
    for a in range(0, K, batch_size):
        x = np.stack([bank.crop(index, s) for s in starts[a : a + batch_size]])
        res = model.forward_from_features(torch.from_numpy(x).to(device))
        out.append(res.framewise.float().cpu().numpy())
    return np.concatenate(out), n


def offline_tracks(
    model: nn.Module, bank: FeatureBank, hop: float = 0.5, lookahead: float = 0.0, indices: Sequence[int] | None = None
) -> dict[str, ScoreTrack]:
    """Score tracks ``{file name: ScoreTrack}`` of the files of ``bank``: the model run offline on the engine's
    windows, stitched by the engine's own rule (:func:`streamdet.stitching.stitch_windows`, same hop quantisation
    and frame grid as :class:`streamdet.Detector`)."""
    spec = bank.spec
    timeline = Timeline.for_window(spec.sample_rate, spec.window_samples, spec.steps, hop, lookahead)
    labels = tuple(getattr(model, "labels", None) or bank.labels)
    tracks = {}
    for i in indices if indices is not None else range(len(bank)):
        wins, n = window_predictions(model, bank, i, timeline)
        name = bank.records[i].path.name
        tracks[name] = ScoreTrack(labels, timeline.frame_seconds, stitch_windows(timeline, wins, n), name,
                                  n / spec.sample_rate)
    return tracks


def ground_truth(records: Sequence[Any], labels: Sequence[str]) -> tuple[dict[str, list], dict[str, float]]:
    """``(EventTable, durations)`` of strong records, keyed by file name; two records with one name are refused (their
    events would be merged and one file's scores would hide the other's)."""
    from collections import Counter

    from streamdet.metrics import events_from_records

    twice = sorted(name for name, n in Counter(r.path.name for r in records).items() if n > 1)
    if twice:
        raise ValueError(f"{len(twice)} files share a name with another one ({', '.join(twice[:3])}...): "
                         "files scored together need distinct names")
    rows = [(r.path.name, e.onset, e.offset, e.label) for r in records for e in (r.events or ()) if e.label in labels]
    gt = events_from_records(rows)
    durations = {r.path.name: float(r.duration) for r in records}
    for name in durations:
        gt.setdefault(name, [])
    return gt, durations


def score_events(
    predictions: Mapping[str, list], gt: Mapping[str, list], durations: Mapping[str, float], labels: Sequence[str]
) -> dict[str, Any]:
    """Event-based (200 ms collar) and segment-based (1 s) figures, overall and per class."""
    from streamdet.metrics import event_based, segment_based

    ev = event_based(predictions, gt, labels=labels, durations=durations, t_collar=0.2)
    seg = segment_based(predictions, gt, labels=labels, durations=durations, time_resolution=1.0)

    def r(v: float) -> float | None:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)

    return {
        "event_f1_macro": r(ev.overall["f1_macro"]),
        "event_f1_micro": r(ev.overall["f1_micro"]),
        "segment_f1_macro": r(seg.overall["f1_macro"]),
        "segment_f1_micro": r(seg.overall["f1_micro"]),
        "segment_error_rate": r(seg.overall["error_rate"]),
        "per_class": {
            c: {"event_f1": r(ev.classes[c]["f1"]), "segment_f1": r(seg.classes[c]["f1"])} for c in labels
        },
    }


def validate(
    model: nn.Module,
    bank: FeatureBank,
    labels: Sequence[str],
    thresholds: Mapping[str, tuple[float, float]] | None = None,
    hop: float = 0.5,
    lookahead: float = 0.0,
    indices: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on the (strong) files of ``bank`` with the engine's rules, offline."""
    from streamdet.metrics import clip_map

    tracks = offline_tracks(model, bank, hop, lookahead, indices)
    records = [bank.records[i] for i in (indices if indices is not None else range(len(bank)))]
    gt, durations = ground_truth(records, labels)
    thresholds = thresholds or dict.fromkeys(labels, (0.5, 0.3))
    pred = tracks_to_events(tracks, PostProcessing.resolve(labels, thresholds=thresholds))
    out = score_events(pred, gt, durations, labels)
    y_true = np.array([[1.0 if any(e.label == c for e in gt[r.path.name]) else 0.0 for c in labels] for r in records])
    y_score = np.stack([tracks[r.path.name].scores.max(axis=0) for r in records])
    out["clip_map"] = round(float(clip_map(y_true, y_score, labels).overall["map"]), 4)
    out["frame_map"] = round(frame_map(tracks, records, labels), 4)
    return out


def frame_map(tracks: Mapping[str, TrackLike], records: Sequence[Any], labels: Sequence[str]) -> float:
    """Threshold-free localisation figure: the macro average precision of the score-track frames against frame
    labels (a frame is positive when events of the class cover at least half of it), over all files. Tracks are
    :class:`ScoreTrack` (or ``(scores, frame_seconds, duration)`` tuples)."""
    from streamdet.metrics import clip_map

    from .datasets import frame_targets

    truth, scores = [], []
    for r in records:
        track = as_track(tracks[r.path.name], labels, r.path.name)
        n = track.frames
        cover = frame_targets(r.events or (), labels, 0.0, n * track.frame_seconds, n, soft=True)
        truth.append((cover >= 0.5).astype(np.float32))
        scores.append(track.scores)
    return float(clip_map(np.concatenate(truth), np.concatenate(scores), labels).overall["map"])


# ------------------------------------------------------------------------------------------------------- trainer
ProgressFactory = Callable[[int, int], Any]


class Trainer:
    """Trains ``model`` on windows of ``train`` (a :class:`FeatureBank` or :class:`RecordWindows`), validating
    each epoch on ``val`` (a strong :class:`FeatureBank`, optional), writing ``out_dir/last.pt``,
    ``out_dir/best.pt`` (streamdet checkpoint of the EMA weights with the best ``select_metric``) and
    ``out_dir/history.jsonl``."""

    def __init__(
        self,
        model: nn.Module,
        train: FeatureBank | RecordWindows,
        labels: Sequence[str],
        config: TrainConfig,
        out_dir: str | Path,
        val: FeatureBank | None = None,
        val_indices: Sequence[int] | None = None,
        console: Any = None,
        provenance: Mapping[str, Any] | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        if isinstance(train, FeatureBank) and _feature_kind(model) != "db":
            raise ValueError("a FeatureBank caches HTS-AT log-mels; train other models from RecordWindows")
        self.cfg = config
        self.labels = list(labels)
        self.out_dir = Path(out_dir)
        self.train_src = train
        self.val = val
        self.val_indices = val_indices
        self.console = console
        self.provenance = dict(provenance or {})
        self.device = resolve_device(config.device)
        if config.threads:
            torch.set_num_threads(int(config.threads))
        self.model = model.to(self.device)
        self.teacher = None
        if teacher is not None and config.distill_weight > 0:
            self.teacher = teacher.to(self.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.ema = EMA(self.model, config.ema_decay)
        self.opt = torch.optim.AdamW(_param_groups(self.model, config.weight_decay), lr=config.lr)
        self.spec = train.spec
        self.weights = balanced_weights(train.records, self.labels) if config.balanced else None
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.train_seconds = 0.0
        feats = self.spec.feature_frames
        bins = getattr(model.config, "n_mels", 64)
        self.specaug = scaled_specaugment(feats, bins)

    # --- checkpoints ----------------------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def save_last(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "history": self.history,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "config": self.cfg.to_dict(),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.last_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.last_path)

    def load_last(self) -> bool:
        """Restore ``last.pt`` if it exists (returns whether it did)."""
        if not self.last_path.exists():
            return False
        state = torch.load(self.last_path, map_location=self.device, weights_only=False)
        saved = {k: v for k, v in state["config"].items() if k not in ("device", "threads", "num_workers", "log_every")}
        now = {k: v for k, v in self.cfg.to_dict().items() if k in saved}
        if saved != now:
            diff = sorted(k for k in saved if saved[k] != now.get(k))
            raise ValueError(f"cannot resume {self.last_path}: the training config differs in {diff}")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.history = list(state["history"])
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.train_seconds = float(state.get("train_seconds", 0.0))
        return True

    def save_best(self, metrics: Mapping[str, Any]) -> None:
        from streamdet.models import save_checkpoint

        save_checkpoint(
            self.ema.module,
            self.best_path,
            training={**self.provenance, "epoch": self.epoch, "step": self.step, "config": self.cfg.to_dict()},
            validation=dict(metrics),
        )

    # --- data --------------------------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> Iterator[Batch]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, epoch])
        plan = plan_windows(self.train_src.records, cfg.steps_per_epoch * cfg.batch_size, self.spec, rng, self.weights)
        ds = WindowDataset(self.train_src, plan, soft=cfg.soft_targets)
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=cfg.batch_size,
            shuffle=False,
            drop_last=True,
            num_workers=cfg.num_workers,
            collate_fn=partial(collate, kind=ds.kind),
        )
        yield from loader

    # --- one step ----------------------------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        torch.manual_seed(cfg.seed * 7_919 + self.step + 1)  # drop-path / dropout
        batch = batch.to(self.device)
        model.train()
        x = batch.x.float()
        if batch.kind == "waveform":
            with torch.no_grad():
                x = model.frontend(x)
        kind = _feature_kind(model)
        clip, frame, strong = batch.clip, batch.frame, batch.strong
        if kind == "db":
            x = random_gain(x, cfg.gain_db, gen)
        mode = cfg.mixup_mode if kind == "db" else "linear"
        mixed = mixup(x, clip, frame, strong, cfg.mixup_prob, cfg.mixup_lam, mode, True, gen)
        x, clip, frame, strong = mixed.x, mixed.clip, mixed.frame, mixed.strong
        teacher = None
        if self.teacher is not None:  # the teacher hears the same window, un-normalised by the student's bn0
            with torch.no_grad():
                t_out, t_frame = forward_logits(self.teacher, x, normalized=kind != "db")
            teacher = (t_out.logits, t_frame)
        if kind == "db":
            x = model.normalize_features(x)
        if cfg.specaugment:
            x = spec_augment(x, self.specaug, gen)
        out, frame_logits = forward_logits(model, x, normalized=True)
        loss, parts = sed_loss(out.logits, frame_logits, clip, frame, strong, cfg.clip_weight, cfg.frame_weight)
        if teacher is not None:
            dl = distill_loss(out.logits, frame_logits, *teacher)
            loss = loss + cfg.distill_weight * dl
            parts.update(loss=loss.item(), distill_loss=dl.item())
        lr = lr_at(self.step, cfg)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            parts["grad_norm"] = float(nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        self.opt.step()
        self.ema.update(model)
        self.step += 1
        parts["lr"] = lr
        return parts

    # --- the loop ----------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False, max_epochs: int | None = None) -> dict[str, Any]:
        """Train for the configured epochs (continuing from ``last.pt`` with ``resume``); return a summary.

        ``max_epochs`` stops early after that many epochs in total (the schedule still spans ``epochs``), as an
        interruption would; a later ``fit(resume=True)`` continues exactly."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        if resume and self.load_last():
            self._log(f"resumed from {self.last_path} at epoch {self.epoch}, step {self.step}")
        (self.out_dir).mkdir(parents=True, exist_ok=True)
        hist_path = self.out_dir / "history.jsonl"
        progress = _Progress(self.console, cfg.total_steps, self.step, cfg.log_every)
        with progress:
            while self.epoch < min(cfg.epochs, max_epochs or cfg.epochs):
                t0 = time.perf_counter()
                sums: dict[str, float] = {}
                n = 0
                for batch in self._epoch_batches(self.epoch):
                    ts = time.perf_counter()
                    parts = self.train_step(batch)
                    n += 1
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + v
                    progress.update(self.step, self.epoch, parts, len(batch) / (time.perf_counter() - ts))
                elapsed = time.perf_counter() - t0
                self.train_seconds += elapsed
                record: dict[str, Any] = {
                    "epoch": self.epoch + 1,
                    "step": self.step,
                    **{k: round(v / max(n, 1), 5) for k, v in sums.items()},
                    "epoch_seconds": round(elapsed, 1),
                    "examples_per_second": round(n * cfg.batch_size / max(elapsed, 1e-9), 1),
                }
                self.epoch += 1
                if self.val is not None:
                    tv = time.perf_counter()
                    metrics = validate(
                        self.ema.module, self.val, self.labels, None, cfg.val_hop, cfg.val_lookahead, self.val_indices
                    )
                    record["val"] = metrics
                    record["val_seconds"] = round(time.perf_counter() - tv, 1)
                    score = metrics.get(cfg.select_metric) or 0.0
                    if self.best is None or score >= self.best:
                        self.best, self.best_epoch = float(score), self.epoch
                        self.save_best(metrics)
                    progress.epoch_done(record)
                else:
                    self.best_epoch = self.epoch
                    self.save_best({})
                    progress.epoch_done(record)
                self.history.append(record)
                with open(hist_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                self.save_last()
        return {
            "epochs": self.epoch,
            "steps": self.step,
            "best_epoch": self.best_epoch,
            "best": self.best,
            "train_seconds": round(self.train_seconds, 1),
            "history": self.history,
        }

    def _log(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg)


class _Progress:
    """A rich progress bar (loss, lr, throughput) on a terminal; periodic plain lines otherwise."""

    def __init__(self, console: Any, total: int, done: int, log_every: int) -> None:
        self.console = console
        self.total = total
        self.done = done
        self.log_every = max(1, log_every)
        self.live = console is not None and getattr(console, "is_terminal", False)
        self.progress = None
        self.task = None
        self.t_start = time.perf_counter()
        self.smooth: dict[str, float] = {}

    def __enter__(self) -> _Progress:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[eps]:.0f} ex/s"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=self.total, completed=self.done, epoch=0, loss=0.0, lr=0.0, eps=0.0
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, step: int, epoch: int, parts: Mapping[str, float], eps: float) -> None:
        for k, v in (("loss", parts["loss"]), ("eps", eps)):
            self.smooth[k] = v if k not in self.smooth else 0.9 * self.smooth[k] + 0.1 * v
        if self.progress is not None:
            self.progress.update(
                self.task, completed=step, epoch=epoch + 1, loss=self.smooth["loss"], lr=parts["lr"],
                eps=self.smooth["eps"],
            )
        elif self.console is not None and step % self.log_every == 0:
            self.console.print(
                f"step {step}/{self.total} epoch {epoch + 1} loss {self.smooth['loss']:.4f} "
                f"(clip {parts['clip_loss']:.4f} frame {parts['frame_loss']:.4f}) lr {parts['lr']:.2e} "
                f"{self.smooth['eps']:.0f} ex/s",
                highlight=False,
            )

    def epoch_done(self, record: Mapping[str, Any]) -> None:
        if self.console is None:
            return
        msg = (
            f"epoch {record['epoch']}: loss {record.get('loss', float('nan')):.4f} "
            f"({record['examples_per_second']:.0f} ex/s, {record['epoch_seconds']:.0f} s)"
        )
        val = record.get("val")
        if val:
            msg += (
                f" | val event F1 {val['event_f1_macro']} segment F1 {val['segment_f1_macro']} "
                f"mAP {val['clip_map']} ({record['val_seconds']:.0f} s)"
            )
        self.console.print(msg, highlight=False)


def default_threads() -> int:
    """CPU cores available to this process (training uses them all)."""
    from streamdet.session import usable_cores

    return usable_cores()
