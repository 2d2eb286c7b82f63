"""Adapting a trained model to new data without losing what it knew (``streamdet train --recipe R --from MODEL``).

Two published, complementary tools:

* **Learning without forgetting** (Li & Hoiem, 2016): the model is fine-tuned on the new data with the model it
  started from as a frozen teacher; a binary cross-entropy towards the teacher's clip and frame probabilities on
  every training window (:func:`streamdet.train.loop.distill_loss`, weight ``TrainConfig.distill_weight``) keeps its
  outputs close to the old ones where the new labels say nothing new.
* **Weight-space ensembling** (WiSE-FT, Wortsman et al., 2022): the final weights are ``(1 - a) * start + a *
  fine_tuned``; small ``a`` keeps the start model's behaviour on its own data, large ``a`` the fine-tune's gains on
  the new data. ``a`` is chosen on validation by :func:`choose_alpha`: the best real-audio validation figure among
  the mixing weights that stay within ``tolerance`` of the start model on the synthetic validation (``a = 0``, the
  start model itself, is always allowed, so adaptation never makes the synthetic validation worse than that).
  The recipe's figure is the one its tuning stage would reach (thresholds and post-processing tuned per mixing
  weight; mean of event and segment F1): a threshold-free frame mAP did not guard the tuned event F1 (measured,
  docs/models/alerts.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["check_start_model", "choose_alpha", "interpolate_weights"]


def check_start_model(model: nn.Module, info: Mapping[str, Any], labels: Sequence[str], window_seconds: float,
                      reference: nn.Module) -> None:
    """Refuse a start model the recipe's data cannot train: other labels, another front-end (the cached features
    would not be its input) or another window. ``model, info`` come from :func:`streamdet.train.teach.load_source`;
    ``reference`` is the recipe's own (fresh) model."""
    name = info.get("path", "the start model")
    if list(model.labels) != list(labels):
        raise ValueError(f"--from {name}: its labels {list(model.labels)} are not the recipe's {list(labels)}")
    if model.frontend_config() != reference.frontend_config():
        raise ValueError(f"--from {name}: its front-end {model.frontend_config()} is not the recipe's "
                         f"{reference.frontend_config()}")
    if abs(float(info["window_seconds"]) - window_seconds) > 1e-6:
        raise ValueError(f"--from {name}: a {info['window_seconds']:g} s window, the recipe's is {window_seconds:g} s")


@torch.no_grad()
def interpolate_weights(start: nn.Module, tuned: nn.Module, alpha: float) -> nn.Module:
    """A copy of ``tuned`` whose floating-point parameters and buffers are ``(1 - alpha) * start + alpha * tuned``
    (integer buffers, such as batch-norm counters, are the tuned model's)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    s0, s1 = start.state_dict(), tuned.state_dict()
    if s0.keys() != s1.keys():
        raise ValueError("the two models have different parameters")
    mixed = {k: torch.lerp(s0[k].to(v.dtype), v, alpha) if v.is_floating_point() else v.clone()
             for k, v in s1.items()}
    out = copy.deepcopy(tuned)
    out.load_state_dict(mixed)
    return out.eval()


def choose_alpha(
    start: nn.Module,
    tuned: nn.Module,
    alphas: Sequence[float],
    score: Callable[[nn.Module], Mapping[str, float]],
    tolerance: float = 0.005,
) -> tuple[float, list[dict[str, float]]]:
    """The mixing weight to keep and the table it was chosen from.

    ``score(model)`` gives ``{"synthetic": x, "real": y}`` (validation figures, higher is better). Among the
    ``alphas`` whose synthetic figure is at least the start model's minus ``tolerance``, the one with the best real
    figure wins (ties: the smaller weight). The start model (``alpha = 0``) is always scored and always allowed.
    """
    grid = sorted({0.0, *(float(a) for a in alphas)})
    rows = []
    for a in grid:
        model = start if a == 0.0 else tuned if a == 1.0 else interpolate_weights(start, tuned, a)
        rows.append({"alpha": a, **{k: float(v) for k, v in score(model).items()}})
    floor = rows[0]["synthetic"] - tolerance
    allowed = [r for r in rows if r["synthetic"] >= floor]
    best = max(allowed, key=lambda r: (r["real"], -r["alpha"]))
    return best["alpha"], rows
