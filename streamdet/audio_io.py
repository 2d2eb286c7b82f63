"""Audio input: block-wise decoding with soundfile, downmix, NaN/inf handling, streaming resampling.

- :func:`read_blocks` decodes any format libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, MP3 with
  libsndfile >= 1.1, AIFF, ...) in fixed-size blocks: a two-hour file is never loaded whole.
- :func:`to_mono` averages channels; :func:`sanitize` replaces NaN/inf samples by 0 and counts them.
- :class:`StreamResampler` wraps ``soxr.ResampleStream`` (stateful, delay-compensated): the
  concatenated output does not depend on how the input was chunked, so streamed and whole-file
  processing see the same model-rate samples.
- Problems with one file raise :class:`AudioFileError`, whose message starts with the file name, so
  a caller processing many files can report it and carry on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import short_error

DEFAULT_BLOCK_FRAMES = 1 << 16
AUDIO_EXTENSIONS = frozenset((".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                              ".au", ".snd", ".caf", ".w64", ".rf64", ".wv", ".sd2", ".voc"))
"""File extensions of the formats libsndfile reads: what folders are searched for (``streamdet file``, the training
data readers). A file named explicitly is tried whatever its extension."""


class AudioFileError(Exception):
    """One audio file could not be used (unreadable, empty, bad format). ``path`` names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NonFiniteSamplesWarning(UserWarning):
    """Input contained NaN or infinite samples; they were replaced by zeros."""


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(path: str | Path):
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioFileError(path, "no such file")
    if p.is_dir():
        raise AudioFileError(path, "is a directory, not an audio file")
    try:
        return sf.SoundFile(str(p))
    except Exception as exc:  # libsndfile reports every problem as a generic error
        raise AudioFileError(path, f"cannot decode audio ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    return short_error(exc, line="last").replace("Error opening ", "").strip()


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path``; raise AudioFileError when it cannot be decoded."""
    with _open(path) as f:
        return AudioInfo(str(path), int(f.samplerate), int(f.channels), int(f.frames), f"{f.format}/{f.subtype}")


def read_blocks(
    path: str | Path, block_frames: int = DEFAULT_BLOCK_FRAMES, *, allow_empty: bool = False
) -> Iterator[np.ndarray]:
    """Yield float32 ``[frames, channels]`` blocks of ``path`` in order, never the whole file at once.

    Raises AudioFileError for an unreadable file, a decoding error part-way, or (unless
    ``allow_empty``) a file without samples.
    """
    f = _open(path)
    with f:
        total = 0
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioFileError(path, f"decoding failed after {total} frames ({_short(exc)})") from None
            if block.shape[0] == 0:
                break
            total += block.shape[0]
            yield block
        if total == 0 and not allow_empty:
            raise AudioFileError(path, "contains no audio samples")


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average ``[frames, channels]`` (or pass a 1-D array) to contiguous float32 mono."""
    block = np.asarray(block)
    if block.ndim == 1:
        return np.ascontiguousarray(block, dtype=np.float32)
    if block.ndim != 2:
        raise ValueError(f"audio must be [frames] or [frames, channels], got shape {block.shape}")
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    return block.mean(axis=1, dtype=np.float32)


def sanitize(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN/inf samples by 0; return the (possibly copied) array and how many were replaced."""
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count:
        x = x.copy()
        x[bad] = 0.0
    return x, count


def warn_nonfinite(source: str, count: int) -> None:
    """Issue a NonFiniteSamplesWarning naming the source (a file or stream)."""
    warnings.warn(
        f"{source}: {count} NaN/inf samples replaced by zeros", NonFiniteSamplesWarning, stacklevel=3
    )


class StreamResampler:
    """Stateful resampler from ``in_rate`` to ``out_rate`` (mono float32); identity when equal.

    Feeding any chunking of a signal and then calling :meth:`flush` yields exactly the samples a
    single call would (soxr's streaming mode is delay-compensated and deterministic).
    """

    def __init__(self, in_rate: float, out_rate: int, quality: str = "HQ") -> None:
        if not (in_rate > 0 and math.isfinite(in_rate)):
            raise ValueError(f"sample_rate must be positive, got {in_rate}")
        self.in_rate = float(in_rate)
        self.out_rate = int(out_rate)
        self._soxr = None
        if self.in_rate != self.out_rate:
            import soxr

            self._soxr = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=quality)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resample the next chunk of mono samples (may return fewer samples than the ratio suggests)."""
        if self._soxr is None:
            return x
        return self._soxr.resample_chunk(x, last=False)

    def flush(self) -> np.ndarray:
        """Return the samples still held back by the filter (end of stream)."""
        if self._soxr is None:
            return np.zeros(0, np.float32)
        return self._soxr.resample_chunk(np.zeros(0, np.float32), last=True)
