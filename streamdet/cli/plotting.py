"""``streamdet file --plot DIR``: one PNG per file with three rows on one time axis:

1. the log-mel spectrogram (numpy: framed FFT and a triangular mel filterbank, computed block by block so a
   long file is never loaded whole; for a long file, consecutive frames are averaged into at most ~4000
   columns; digital silence is drawn black);
2. the per-class score track the events were derived from, as a heat map (0..1);
3. the detected events as labelled bars, one row per class (the label inside the bar when it fits, else
   just after it, so a short event never looks longer than it is).

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
FLOOR_DB = -100.0  # power floor of the spectrogram (digital silence)


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


def log_mel(
    path: str | Path, n_mels: int = 64, max_columns: int = MAX_COLUMNS
) -> tuple[np.ndarray, float, float, float]:
    """Log-mel spectrogram of an audio file in dB: ``(S [n_mels, T], column_seconds, start_seconds, fmax)``.

    25 ms Hann frames (FFT size the next power of two) centred every 10 ms, the signal zero-padded by half
    a frame at both ends, so the columns cover the whole file. When that would give more than
    ``max_columns`` columns, each column is the mean power of ``k`` consecutive 10 ms frames (every
    sample still counts: a short sound in a long file is not stepped over). Column ``j`` spans
    ``start_seconds + j * column_seconds`` to the next column; values are clamped at ``FLOOR_DB``
    (digital silence) and at 80 dB below the loudest value.
    """
    import soundfile as sf

    from ..audio_io import read_blocks, to_mono

    info = sf.info(str(path))
    sr = int(info.samplerate)
    n_fft = 1 << int(np.ceil(np.log2(max(0.025 * sr, 64))))
    hop = max(1, round(0.010 * sr))
    n_frames = -(-(2 * max(info.frames, 0) + hop) // (2 * hop))  # frames centred 0, hop, ...: the last reaches the end
    pool = max(1, -(-n_frames // max_columns))
    fmax = min(sr / 2, 16000.0)
    fb_t = mel_filterbank(sr, n_fft, n_mels, 0.0, fmax).T.copy()
    window = np.hanning(n_fft).astype(np.float32)

    def mel_frames(buf: np.ndarray, limit: int | None = None) -> tuple[np.ndarray, int]:
        """Mel power of the complete frames in ``buf`` (``[n, n_mels]``) and their count."""
        n = 0 if len(buf) < n_fft else 1 + (len(buf) - n_fft) // hop
        if limit is not None:
            n = min(n, limit)
        if n <= 0:
            return np.zeros((0, n_mels), np.float32), 0
        frames = np.lib.stride_tricks.sliding_window_view(buf, n_fft)[::hop][:n]
        power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
        return power.astype(np.float32) @ fb_t, n

    columns: list[np.ndarray] = []
    pending = np.zeros((0, n_mels), np.float32)  # frames not yet pooled into a column

    def take(final: bool) -> None:
        nonlocal pending
        whole = len(pending) // pool * pool
        if whole:
            columns.append(pending[:whole].reshape(-1, pool, n_mels).mean(axis=1))
        if final and len(pending) > whole:
            columns.append(pending[whole:].mean(axis=0, keepdims=True))
        pending = pending[len(pending) if final else whole :]

    carry = np.zeros(n_fft // 2, np.float32)  # centring: frame j is centred on sample j * hop
    total = produced = 0
    for block in read_blocks(path, 1 << 18, allow_empty=True):
        mono = to_mono(block)
        total += len(mono)
        buf = np.concatenate([carry, mono])
        mel, n = mel_frames(buf)
        pending = np.concatenate([pending, mel])
        produced += n
        carry = buf[n * hop :]
        take(final=False)
    wanted = max(1, -(-(2 * total + hop) // (2 * hop)))  # as n_frames, from the samples actually read
    mel, n = mel_frames(np.concatenate([carry, np.zeros(n_fft, np.float32)]), limit=wanted - produced)
    pending = np.concatenate([pending, mel])
    take(final=True)
    spec = np.concatenate(columns, axis=0).T
    db = np.maximum(10.0 * np.log10(np.maximum(spec, 1e-30)), FLOOR_DB)
    db = np.maximum(db, db.max() - 80.0)
    return db, pool * hop / sr, -0.5 * hop / sr, fmax


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
    from matplotlib.colors import to_rgb
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    spec, column_seconds, start_seconds, fmax = log_mel(audio)
    n_mels = spec.shape[0]
    n_cls = len(labels)
    duration = max(duration, 1e-3)
    width = float(np.clip(6 + duration / 4, 10, 22))
    heights = [3.0, max(1.0, 0.32 * n_cls), max(1.0, 0.32 * n_cls)]
    fig = Figure(figsize=(width, sum(heights) + 1.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax_spec, ax_score, ax_ev = fig.subplots(3, 1, sharex=True, height_ratios=heights)
    fig.suptitle(title or Path(audio).name, x=0.01, ha="left", fontsize=11)

    loudest = float(spec.max())
    vmax = max(loudest, FLOOR_DB + 20.0)  # a silent file: everything at the floor, drawn black
    im = ax_spec.imshow(spec, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                        vmin=max(FLOOR_DB, vmax - 80.0), vmax=vmax,
                        extent=(start_seconds, start_seconds + spec.shape[1] * column_seconds, 0, n_mels))
    ticks_hz = [f for f in (0, 250, 500, 1000, 2000, 4000, 8000, 16000) if f <= fmax]
    mel_max = float(_hz_to_mel(fmax))
    ax_spec.set_yticks([float(_hz_to_mel(f)) / mel_max * n_mels for f in ticks_hz])
    ax_spec.set_yticklabels([f"{f / 1000:g}k" if f >= 1000 else str(f) for f in ticks_hz])
    ax_spec.set_ylabel("Hz (mel scale)")
    silent = " (digital silence)" if loudest <= FLOOR_DB + 1e-6 else ""
    ax_spec.set_title(f"log-mel spectrogram{silent}", loc="left", fontsize=9)
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
    captions = []
    for ev in events:
        if ev.label not in labels:
            continue
        row = labels.index(ev.label)
        offset = ev.offset if ev.offset is not None else duration
        ax_ev.broken_barh([(ev.onset, offset - ev.onset)], (row - 0.38, 0.76), facecolors=colors[row],
                          edgecolors="black", linewidth=0.5)
        r, g, b = to_rgb(colors[row])
        ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.6 else "white"
        text = ax_ev.text(ev.onset, row, f" {ev.label} {ev.confidence:.2f} ", va="center", ha="left", fontsize=7,
                          color=ink, clip_on=True)
        captions.append((text, ev.onset, offset))
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
    if captions:  # a caption wider than its bar goes after the bar, in black
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        for text, onset, offset in captions:
            left, right = ax_ev.transData.transform([(onset, 0.0), (offset, 0.0)])[:, 0]
            if text.get_window_extent(renderer).width > right - left:
                text.set_x(offset)
                text.set_color("black")
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    return png
