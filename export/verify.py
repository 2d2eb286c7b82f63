"""Check an exported graph against the PyTorch model it came from.

ONNX Runtime (CPU) and PyTorch run the same inputs: Gaussian noise, a log sweep, tone bursts, clicks, silence and a
near-full-scale signal, one by one and as a batch of 3 when the batch axis is dynamic. The figure is the largest
absolute difference of the probabilities (``framewise`` and ``clipwise``). For fp16 / int8 the events the engine
produces on a test scene are also compared with those of the fp32 graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ExportError
from .graph import INPUT_NAME, OUTPUT_NAMES, ContractWrapper, WindowPlan


@dataclass
class Verification:
    """What verification measured."""

    max_abs_diff: float
    framewise_max_abs_diff: float
    clipwise_max_abs_diff: float
    inputs: list[str]
    batch_sizes: list[int]
    events_match: bool | None = None
    events: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "max_abs_diff": _round(self.max_abs_diff),
            "framewise_max_abs_diff": _round(self.framewise_max_abs_diff),
            "clipwise_max_abs_diff": _round(self.clipwise_max_abs_diff),
            "inputs": list(self.inputs),
            "batch_sizes": list(self.batch_sizes),
            "events_match": self.events_match,
            **({"events": self.events} if self.events else {}),
        }


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def probe_signals(window_samples: int, sample_rate: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Named float32 test windows: random and structured."""
    rng = np.random.default_rng(seed)
    n = window_samples
    t = np.arange(n) / sample_rate
    nyquist = sample_rate / 2
    f0, f1 = 50.0, 0.9 * nyquist
    duration = n / sample_rate
    sweep = 0.3 * np.sin(2 * np.pi * f0 * duration / math.log(f1 / f0) * (np.exp(t / duration * math.log(f1 / f0)) - 1))
    bursts = np.zeros(n)
    for k, start in enumerate(np.linspace(0, 0.8, 5)):
        a, b = int(start * n), int((start + 0.1) * n)
        bursts[a:b] = 0.5 * np.sin(2 * np.pi * (440.0 * 2 ** (k / 2)) * t[a:b])
    clicks = np.zeros(n)
    clicks[:: max(1, sample_rate // 4)] = 0.9
    signals = {
        "noise": 0.1 * rng.standard_normal(n),
        "sweep": sweep,
        "tone_bursts": bursts + 0.01 * rng.standard_normal(n),
        "clicks": clicks,
        "silence": np.zeros(n),
        "loud": np.clip(0.7 * rng.standard_normal(n), -1.0, 1.0),
    }
    return {name: x.astype(np.float32) for name, x in signals.items()}


Reference = list[tuple[str, np.ndarray, list[np.ndarray]]]
"""PyTorch's outputs on the test windows: ``(name, batch, [framewise, clipwise])``."""


def torch_reference(model: nn.Module, plan: WindowPlan, dynamic_batch: bool) -> Reference:
    """PyTorch's ``framewise`` and ``clipwise`` on the test windows, one by one and as a batch of 3 when dynamic."""
    wrapper = ContractWrapper(model, plan.steps).eval()
    signals = probe_signals(plan.window_samples, plan.sample_rate)
    batches: list[tuple[str, np.ndarray]] = [(name, x[None]) for name, x in signals.items()]
    if dynamic_batch:
        batches.append(("batch3", np.stack([signals["noise"], signals["sweep"], signals["tone_bursts"]])))
    reference = []
    for name, batch in batches:
        with torch.no_grad():
            reference.append((name, batch, [t.numpy() for t in wrapper(torch.from_numpy(batch))]))
    return reference


def compare_with_torch(
    onnx_path: Path, model: nn.Module, plan: WindowPlan, dynamic_batch: bool, reference: Reference | None = None
) -> Verification:
    """Run ONNX Runtime (CPU) and PyTorch on the test windows; the largest probability differences.

    ``reference``: PyTorch's outputs from :func:`torch_reference`, when already computed (several graphs of one
    model are compared with the same numbers).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    declared = {t.name: list(t.shape) for t in session.get_outputs()}
    if reference is None:
        reference = torch_reference(model, plan, dynamic_batch)
    frame_diff = clip_diff = 0.0
    for _, batch, want in reference:
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        for name, ours, theirs in zip(OUTPUT_NAMES, got, want, strict=True):
            if ours.shape != theirs.shape:
                raise ExportError(f"{name}: ONNX Runtime's shape {ours.shape} differs from PyTorch's {theirs.shape}")
            fixed = [(i, d) for i, d in enumerate(declared[name]) if isinstance(d, int)]
            if any(ours.shape[i] != d for i, d in fixed):
                raise ExportError(f"{name}: ONNX Runtime's shape {ours.shape} contradicts the declared "
                                  f"{declared[name]}")
        frame_diff = max(frame_diff, _max_diff(got[0], want[0]))
        clip_diff = max(clip_diff, _max_diff(got[1], want[1]))
    return Verification(
        max_abs_diff=max(frame_diff, clip_diff),
        framewise_max_abs_diff=frame_diff,
        clipwise_max_abs_diff=clip_diff,
        inputs=[name for name, batch, _ in reference if batch.shape[0] == 1],
        batch_sizes=sorted({batch.shape[0] for _, batch, _ in reference}),
    )


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not (np.isfinite(a64).all()):
        return math.inf
    return float(np.max(np.abs(a64 - b64))) if a64.size else 0.0


EVENT_CHECK_HOPS_PER_WINDOW = 4
"""The event comparison evaluates a window every quarter window (so any window length works, and fast)."""


def probe_scene(plan: WindowPlan, seed: int = 1) -> np.ndarray:
    """Four windows of structured sound (tone bursts, a sweep, silence, noise) for comparing events."""
    parts = probe_signals(plan.window_samples, plan.sample_rate, seed)
    return np.concatenate([parts["tone_bursts"], parts["sweep"], parts["silence"], parts["noise"]])


def compare_events(reference: Path, candidate: Path, plan: WindowPlan) -> tuple[bool, dict[str, Any]]:
    """Events of the engine (hop: a quarter window) on :func:`probe_scene` with the fp32 ``reference`` and
    ``candidate`` graphs.

    They match when both give the same number of events per class and every onset / offset lies within one model
    step of its counterpart.
    """
    from streamdet import Detector

    audio = probe_scene(plan)
    hop = plan.window_seconds / EVENT_CHECK_HOPS_PER_WINDOW
    found = []
    for path in (reference, candidate):
        detector = Detector(path, device="cpu", hop=hop)
        stream = detector.stream(sample_rate=plan.sample_rate, name="export-check")
        stream.push(audio)
        stream.close()
        found.append(sorted((e.label, e.onset, e.offset or 0.0) for e in stream.events))
        detector.close()
    ref, cand = found
    match = len(ref) == len(cand) and all(
        a[0] == b[0] and abs(a[1] - b[1]) <= plan.step_seconds + 1e-6 and abs(a[2] - b[2]) <= plan.step_seconds + 1e-6
        for a, b in zip(ref, cand, strict=True)
    )
    summary = {"scene_seconds": round(len(audio) / plan.sample_rate, 3), "hop_seconds": round(hop, 6),
               "fp32_events": len(ref), "events": len(cand), "tolerance_seconds": round(plan.step_seconds, 6)}
    return match, summary
