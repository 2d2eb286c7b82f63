"""``streamdet file --plot DIR``: one PNG per file with three rows on one time axis:

1. the log-mel spectrogram (numpy: framed FFT and a triangular mel filterbank, computed block by block so a
   long file is never loaded whole, with the frame hop widened to keep at most ~4000 columns);
2. the per-class score track the events were derived from, as a heat map (0..1);
3. the detected events as labelled bars, one row per class.

matplotlib (the ``plot`` extra) is imported only here and only when a plot is made; the object-oriented
API with the Agg canvas is used, so no GUI backend or pyplot state is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..events import Event

PLOT_EXTRA_HINT = "--plot needs matplotlib, which is not installed: pip install 'streamdet[plot]'"
MAX_COLUMNS = 4000


class PlotUnavailableError(RuntimeError):
    """matplotlib is missing."""


def require_matplotlib() -> None:
    """Raise PlotUnavailableError (naming the ``plot`` extra) when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise PlotUnavailableError(PLOT_EXTRA_HINT) from None


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular HTK-mel filters, ``[n_mels, n_fft // 2 + 1]``."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    down = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def log_mel(path: str | Path, n_mels: int = 64, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, float, float]:
    """Log-mel spectrogram of an audio file in dB: ``(S [n_mels, T], column_seconds, fmax)``.

    Column ``j`` is the frame starting at ``j * column_seconds``. 25 ms Hann frames (FFT size the next
    power of two), 10 ms hop, or a longer hop so that there are at most ``max_columns`` columns.
    """
    import soundfile as sf

    from ..audio_io import read_blocks, to_mono

    info = sf.info(str(path))
    sr = int(info.samplerate)
    n_fft = 1 << int(np.ceil(np.log2(max(0.025 * sr, 64))))
    hop = max(int(0.010 * sr), int(np.ceil(info.frames / max_columns)), 1)
    fmax = min(sr / 2, 16000.0)
    fb = mel_filterbank(sr, n_fft, n_mels, 0.0, fmax)
    window = np.hanning(n_fft).astype(np.float32)
    columns: list[np.ndarray] = []
    carry = np.zeros(0, np.float32)
    for block in read_blocks(path, 1 << 18, allow_empty=True):
        buf = np.concatenate([carry, to_mono(block)])
        n = 0 if len(buf) < n_fft else 1 + (len(buf) - n_fft) // hop
        if n:
            frames = np.lib.stride_tricks.sliding_window_view(buf, n_fft)[::hop][:n]
            spec = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
            columns.append((spec.astype(np.float32) @ fb.T).T)
        carry = buf[n * hop :]
    if carry.size:  # the tail: one zero-padded frame
        frame = np.zeros(n_fft, np.float32)
        frame[: min(n_fft, carry.size)] = carry[:n_fft]
        columns.append((np.abs(np.fft.rfft(frame * window)) ** 2 @ fb.T)[:, None].astype(np.float32))
    mel = np.concatenate(columns, axis=1) if columns else np.zeros((n_mels, 1), np.float32)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return db, hop / sr, fmax


def plot_file(
    png: str | Path,
    audio: str | Path,
    labels: Sequence[str],
    scores: np.ndarray,
    frame_seconds: float,
    events: Sequence[Event],
    duration: float,
    thresholds: dict[str, tuple[float, float]] | None = None,
    title: str | None = None,
) -> Path:
    """Write the three-row figure for one file to ``png`` and return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    spec, column_seconds, fmax = log_mel(audio)
    n_mels = spec.shape[0]
    n_cls = len(labels)
    duration = max(duration, 1e-3)
    width = float(np.clip(6 + duration / 4, 10, 22))
    heights = [3.0, max(1.0, 0.32 * n_cls), max(1.0, 0.32 * n_cls)]
    fig = Figure(figsize=(width, sum(heights) + 1.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax_spec, ax_score, ax_ev = fig.subplots(3, 1, sharex=True, height_ratios=heights)
    fig.suptitle(title or Path(audio).name, x=0.01, ha="left", fontsize=11)

    im = ax_spec.imshow(spec, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                        extent=(0.0, spec.shape[1] * column_seconds, 0, n_mels))
    ticks_hz = [f for f in (0, 250, 500, 1000, 2000, 4000, 8000, 16000) if f <= fmax]
    mel_max = float(_hz_to_mel(fmax))
    ax_spec.set_yticks([float(_hz_to_mel(f)) / mel_max * n_mels for f in ticks_hz])
    ax_spec.set_yticklabels([f"{f / 1000:g}k" if f >= 1000 else str(f) for f in ticks_hz])
    ax_spec.set_ylabel("Hz (mel scale)")
    ax_spec.set_title("log-mel spectrogram", loc="left", fontsize=9)
    cax = ax_spec.inset_axes((1.005, 0.0, 0.008, 1.0))
    fig.colorbar(im, cax=cax).set_label("dB", fontsize=8)

    frames = scores.shape[0]
    if frames:
        hm = ax_score.imshow(scores.T, origin="upper", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                             interpolation="nearest", extent=(0.0, frames * frame_seconds, n_cls - 0.5, -0.5))
        cax = ax_score.inset_axes((1.005, 0.0, 0.008, 1.0))
        fig.colorbar(hm, cax=cax).set_label("score", fontsize=8)
    ax_score.set_ylim(n_cls - 0.5, -0.5)
    ax_score.set_yticks(range(n_cls))
    ax_score.set_yticklabels(labels)
    on_text = ""
    if thresholds:
        pairs = {tuple(v) for v in thresholds.values()}
        if len(pairs) == 1:
            on, off = next(iter(pairs))
            on_text = f" (thresholds on {on:g} / off {off:g})"
    ax_score.set_title("class scores" + on_text, loc="left", fontsize=9)

    colors = [f"C{i % 10}" for i in range(n_cls)]
    for ev in events:
        if ev.label not in labels:
            continue
        row = labels.index(ev.label)
        offset = ev.offset if ev.offset is not None else duration
        ax_ev.broken_barh([(ev.onset, offset - ev.onset)], (row - 0.38, 0.76), facecolors=colors[row],
                          edgecolors="black", linewidth=0.5)
        ax_ev.text(ev.onset + 0.02 * min(1.0, offset - ev.onset), row, f" {ev.label} {ev.confidence:.2f}",
                   va="center", ha="left", fontsize=7, color="white", clip_on=True,
                   bbox={"boxstyle": "square,pad=0.1", "facecolor": colors[row], "edgecolor": "none"})
    ax_ev.set_ylim(n_cls - 0.5, -0.5)
    ax_ev.set_yticks(range(n_cls))
    ax_ev.set_yticklabels(labels)
    ax_ev.grid(axis="x", alpha=0.3)
    ax_ev.set_xlim(0.0, duration)
    ax_ev.set_xlabel("time (s)")
    ax_ev.set_title(f"detected events ({len(events)})", loc="left", fontsize=9)
    if not events:
        ax_ev.legend(handles=[Patch(color="none", label="no events")], loc="upper right", frameon=False,
                     fontsize=8)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    return png
