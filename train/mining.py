"""Hard-negative mining: draw the training files on which the model fires falsely more often.

Between two parts of a training run, the current (EMA) model scores every file of the training
:class:`~streamdet.train.torch_data.FeatureBank` with the engine's window rule; a file's *false-positive score*
is, over the classes, the highest mean of its ``top`` highest frame scores on frames where the class is absent
(music, crowd, percussion, notification tones and the other distractors and beds). The sampling weight of file
``i`` becomes ``base[i] * (1 + boost * fp[i])``: files with confident false alarms are drawn up to
``1 + boost`` times as often, files the model already gets right keep their share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["false_positive_scores", "mined_weights"]


def false_positive_scores(model: Any, bank: Any, labels: Sequence[str], top: int = 4) -> np.ndarray:
    """Per file of ``bank``: the largest (over classes) mean of the ``top`` highest scores on frames where the
    class is absent (soft frame target below 0.01); 0 for a file with no such frame."""
    from .datasets import frame_targets
    from .loop import offline_tracks

    model.eval()
    tracks = offline_tracks(model, bank, hop=bank.spec.window_seconds, lookahead=0.0)
    out = np.zeros(len(bank))
    for i, record in enumerate(bank.records):
        track = tracks[record.path.name]
        scores, frame_s = track.scores, track.frame_seconds
        frames = scores.shape[0]
        target = frame_targets(record.events or (), labels, 0.0, frames * frame_s, frames, soft=True)
        best = 0.0
        for c in range(len(labels)):
            neg = scores[target[:, c] < 0.01, c]
            if neg.size:
                best = max(best, float(np.mean(np.sort(neg)[-top:])))
        out[i] = best
    return out


def mined_weights(base: np.ndarray | None, fp: np.ndarray, boost: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Sampling weights ``base * (1 + boost * fp)`` (normalised) and a summary of the false-positive scores."""
    base = np.full(len(fp), 1.0 / len(fp)) if base is None else np.asarray(base, np.float64)
    w = base * (1.0 + boost * np.clip(fp, 0.0, 1.0))
    w /= w.sum()
    summary = {"boost": boost, "files": len(fp), "fp_mean": round(float(fp.mean()), 4),
               "files_fp_over_0.5": int((fp > 0.5).sum()),
               "drawn_share_of_files_fp_over_0.5": round(float(w[fp > 0.5].sum()), 4),
               "before_share_of_files_fp_over_0.5": round(float(base[fp > 0.5].sum() / base.sum()), 4)}
    return w, summary
