"""Training windows as torch data: a log-mel cache of whole files, class-balanced window plans, a ``Dataset``.

Two sources of fixed-length windows, both producing the same :class:`Batch`:

* :class:`FeatureBank` - the model's front-end run once over whole files (synthesised scenes, or any records
  that fit in memory) with ``pad_seconds`` of digital silence on both sides, kept as float16. A window
  starting at ``t0`` seconds is a slice of ``feature_frames`` frames; ``t0`` may be negative or run past the
  end, like the first and last windows of a stream (the engine fills missing history with zeros). Training on
  the cache skips audio decoding and the DFT, which is most of the cost of a small model on a CPU.
* :class:`RecordWindows` - windows read from the audio files on demand (:func:`streamdet.train.datasets.load_window`)
  for datasets too large to cache; the batch then holds waveforms and the loop runs the front-end.

A window plan (:func:`plan_windows`) draws ``(record, start)`` pairs from one seeded generator per epoch, with
records weighted by :func:`balanced_weights` (every class, and "no event", gets the same share of draws), so an
epoch is reproducible and resumable. Frame targets are *soft* by default (the fraction of each step covered by
the class), which puts event boundaries between steps instead of rounding them outwards to step edges.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .datasets import AudioRecord, audio_duration, frame_targets, load_audio, load_window

__all__ = [
    "Batch",
    "FeatureBank",
    "RecordWindows",
    "WindowDataset",
    "WindowSpec",
    "balanced_weights",
    "collate",
    "plan_windows",
    "window_targets",
]


@dataclass(frozen=True)
class WindowSpec:
    """Geometry of one model input window (``window_samples`` at ``sample_rate``, ``steps`` framewise steps)."""

    sample_rate: int
    window_samples: int
    steps: int
    hop_length: int  # front-end hop in samples
    feature_frames: int  # front-end frames of one window

    @classmethod
    def for_model(cls, model: torch.nn.Module, window_samples: int | None = None) -> WindowSpec:
        """The spec of ``model`` for ``window_samples`` (default: its native window)."""
        window_samples = int(window_samples or model.native_window_samples)
        frontend = model.frontend
        hop = int(getattr(frontend, "hop_length", 0) or getattr(frontend, "frame_shift", 0))
        if hasattr(frontend, "num_frames"):
            frames = int(frontend.num_frames(window_samples))
        else:  # pragma: no cover - every streamdet front-end has num_frames
            frames = int(frontend(torch.zeros(1, window_samples)).shape[1])
        return cls(int(model.sample_rate), window_samples, int(model.steps_for(window_samples)), hop, frames)

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def hop_seconds(self) -> float:
        """Front-end hop in seconds (the grid window starts are drawn on)."""
        return self.hop_length / self.sample_rate

    @property
    def step_seconds(self) -> float:
        return self.window_seconds / self.steps


@dataclass
class Batch:
    """A training batch: ``x`` is log-mel features ``[B, T, F]`` (``kind="features"``, front-end output before
    any normalisation) or waveforms ``[B, N]`` (``kind="waveform"``); ``clip`` ``[B, C]``; ``frame``
    ``[B, steps, C]``; ``strong`` ``[B]`` bool (False: weak labels, frame loss masked)."""

    x: torch.Tensor
    clip: torch.Tensor
    frame: torch.Tensor
    strong: torch.Tensor
    kind: str = "features"

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.x.to(device), self.clip.to(device), self.frame.to(device), self.strong.to(device), self.kind
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])


def window_targets(
    record: AudioRecord, labels: Sequence[str], spec: WindowSpec, start: float, soft: bool = True
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(clip [C], frame [steps, C], strong)`` targets of a window of ``record`` starting at ``start`` s.

    Strong records: frame targets from the events (soft: covered fraction of each step) and the clip target
    as their maximum over steps (so a sliver of an event at the window edge is a weak positive, consistent
    with HTS-AT's clip output, the mean of the frame logits). Weak records: clip target from the labels and
    all-zero frame targets with ``strong=False``.
    """
    if record.events is not None:
        frame = frame_targets(record.events, labels, start, spec.window_seconds, spec.steps, soft=soft)
        return frame.max(axis=0), frame, True
    clip = np.zeros(len(labels), np.float32)
    for lab in record.labels:
        if lab in labels:
            clip[list(labels).index(lab)] = 1.0
    return clip, np.zeros((spec.steps, len(labels)), np.float32), False


def balanced_weights(records: Sequence[AudioRecord], labels: Sequence[str], none_share: float = 1.0) -> np.ndarray:
    """Sampling weights that give every class (and records without any class, with ``none_share`` times a
    class's share) the same total probability; a record with several classes counts for each. Sums to 1."""
    labels = list(labels)
    counts = np.zeros(len(labels) + 1)
    member: list[list[int]] = []
    for r in records:
        idx = sorted({labels.index(lab) for lab in r.labels if lab in labels}) or [len(labels)]
        member.append(idx)
        counts[idx] += 1
    share = np.ones(len(labels) + 1)
    share[-1] = none_share
    w = np.array([sum(share[i] / counts[i] for i in idx) for idx in member], np.float64)
    return w / w.sum() if w.sum() > 0 else np.full(len(records), 1.0 / max(1, len(records)))


def plan_windows(
    records: Sequence[AudioRecord],
    n: int,
    spec: WindowSpec,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    edge: float = 0.25,
) -> list[tuple[int, float]]:
    """``n`` draws of ``(record index, start seconds)``; starts lie on the front-end hop grid, uniformly in
    ``[-(window - edge), duration - edge]`` so that every window holds at least ``edge`` s of the file and the
    partly empty first/last windows of a stream are represented. Records are drawn with ``weights``."""
    p = None if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
    idx = rng.choice(len(records), size=n, replace=True, p=p)
    win, hop = spec.window_seconds, spec.hop_seconds
    out = []
    for i in idx.tolist():
        dur = records[i].duration
        if dur is None:
            dur = audio_duration(records[i].path)
        lo, hi = -(win - edge), max(-(win - edge), dur - edge)
        start = np.floor(rng.uniform(lo, hi) / hop) * hop
        out.append((i, float(start)))
    return out


class FeatureBank:
    """Front-end features of whole files, padded with ``pad_seconds`` of silence on both sides (float16).

    ``features[i]`` is ``[frames, F]``; frame ``j`` is centred at ``j * hop - pad`` seconds of file ``i``.
    """

    def __init__(
        self,
        records: Sequence[AudioRecord],
        features: Sequence[np.ndarray],
        spec: WindowSpec,
        pad_seconds: float,
        labels: Sequence[str],
    ) -> None:
        self.records = list(records)
        self.features = list(features)
        self.spec = spec
        self.pad_seconds = float(pad_seconds)
        self.labels = list(labels)
        self.pad_frames = round(self.pad_seconds / spec.hop_seconds)

    @classmethod
    def build(
        cls,
        records: Sequence[AudioRecord],
        model: torch.nn.Module,
        labels: Sequence[str],
        spec: WindowSpec | None = None,
        pad_seconds: float | None = None,
        progress: Callable[[int, int], Any] | None = None,
    ) -> FeatureBank:
        """Run ``model.frontend`` over every record (loaded at the model rate, padded with zeros)."""
        spec = spec or WindowSpec.for_model(model)
        pad_seconds = spec.window_seconds if pad_seconds is None else pad_seconds
        pad = round(pad_seconds / spec.hop_seconds) * spec.hop_length
        feats = []
        frontend = model.frontend
        with torch.no_grad():
            for i, r in enumerate(records):
                x = load_audio(r.path, spec.sample_rate)
                x = np.pad(x, (pad, pad))
                f = frontend(torch.from_numpy(x)[None].float())[0]
                feats.append(f.numpy().astype(np.float16))
                if progress:
                    progress(i + 1, len(records))
        return cls(records, feats, spec, pad / spec.sample_rate, labels)

    def __len__(self) -> int:
        return len(self.records)

    def crop(self, i: int, start: float) -> np.ndarray:
        """Features ``[feature_frames, F]`` (float32) of the window of file ``i`` starting at ``start`` s.

        Frames beyond the padded file repeat the silent edge frame."""
        f = self.features[i]
        j0 = round(start / self.spec.hop_seconds) + self.pad_frames
        T = self.spec.feature_frames
        if j0 >= 0 and j0 + T <= len(f):
            return f[j0 : j0 + T].astype(np.float32)
        idx = np.clip(np.arange(j0, j0 + T), 0, len(f) - 1)
        return f[idx].astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the bank to one ``.npz`` file (features concatenated, plus the record list as JSON)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(f) for f in self.features], np.int64)
        meta = {
            "spec": self.spec.__dict__,
            "pad_seconds": self.pad_seconds,
            "labels": self.labels,
            "records": [_record_to_json(r) for r in self.records],
        }
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, features=np.concatenate(self.features), lengths=lengths, meta=np.array(json.dumps(meta)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureBank:
        """Inverse of :meth:`save`."""
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
            data = z["features"]
            feats = [data[a:b] for a, b in itertools.pairwise(bounds)]
        records = [_record_from_json(r) for r in meta["records"]]
        return cls(records, feats, WindowSpec(**meta["spec"]), meta["pad_seconds"], meta["labels"])


def _record_to_json(r: AudioRecord) -> dict[str, Any]:
    events = None if r.events is None else [[e.label, e.onset, e.offset] for e in r.events]
    return {"path": str(r.path), "duration": r.duration, "labels": list(r.labels), "events": events}


def _record_from_json(d: dict[str, Any]) -> AudioRecord:
    from .datasets import StrongEvent

    events = None if d["events"] is None else tuple(StrongEvent(a, float(b), float(c)) for a, b, c in d["events"])
    return AudioRecord(Path(d["path"]), d["duration"], tuple(d["labels"]), events)


class RecordWindows:
    """Windows read from audio files on demand (for datasets that do not fit a :class:`FeatureBank`)."""

    def __init__(self, records: Sequence[AudioRecord], spec: WindowSpec, labels: Sequence[str]) -> None:
        self.records = list(records)
        self.spec = spec
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.records)

    def waveform(self, i: int, start: float) -> np.ndarray:
        """Audio ``[window_samples]`` of file ``i`` from ``start`` s (zeros outside the file)."""
        spec = self.spec
        lead = max(0.0, -start)
        n_lead = round(lead * spec.sample_rate)
        w = load_window(
            self.records[i], self.labels, spec.window_seconds - lead, spec.sample_rate, spec.steps,
            start=max(0.0, start),
        )
        x = np.concatenate([np.zeros(n_lead, np.float32), w.audio])[: spec.window_samples]
        return np.pad(x, (0, spec.window_samples - len(x)))


class WindowDataset(torch.utils.data.Dataset):
    """A ``Dataset`` over a window plan: item ``k`` is window ``plan[k]`` of ``source`` with its targets."""

    def __init__(
        self, source: FeatureBank | RecordWindows, plan: Sequence[tuple[int, float]], soft: bool = True
    ) -> None:
        self.source = source
        self.plan = list(plan)
        self.soft = soft

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        i, start = self.plan[k]
        src = self.source
        x = src.crop(i, start) if isinstance(src, FeatureBank) else src.waveform(i, start)
        clip, frame, strong = window_targets(src.records[i], src.labels, src.spec, start, self.soft)
        return x, clip, frame, strong

    @property
    def kind(self) -> str:
        return "features" if isinstance(self.source, FeatureBank) else "waveform"


def collate(items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, bool]], kind: str = "features") -> Batch:
    """Stack dataset items into a :class:`Batch`."""
    xs, clips, frames, strong = zip(*items, strict=True)
    return Batch(
        torch.from_numpy(np.stack(xs)),
        torch.from_numpy(np.stack(clips)),
        torch.from_numpy(np.stack(frames)),
        torch.tensor(strong, dtype=torch.bool),
        kind,
    )
