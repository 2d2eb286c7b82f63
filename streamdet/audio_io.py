"""Audio input: block-wise decoding with soundfile, downmix, NaN/inf handling, streaming resampling.

- :func:`read_blocks` decodes any format libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, MP3 with
  libsndfile >= 1.1, AIFF, ...) in bounded blocks: a two-hour file is never loaded whole, and one block
  never holds more than :data:`MAX_BLOCK_SECONDS` of audio nor :data:`MAX_BLOCK_VALUES` samples, whatever
  the file's rate and channel count (a 1 Hz file does not turn 65,536 frames into 18 hours of audio).
- Files are opened once, by file descriptor: FIFOs work (and do not wait for a writer that never comes),
  non-UTF-8 file names work, and a file that cannot be opened is reported with the system's reason. A header
  rate above :data:`MAX_INPUT_RATE` is refused.
- A file shorter than its header says (a truncated WAV, AIFF, OGG or MP3) is read as far as it goes, with a
  :class:`TruncatedAudioWarning`; samples beyond ±:data:`SAMPLE_LIMIT` (corrupt float data) are clipped with
  a :class:`SampleRangeWarning`, so they cannot overflow the model into NaN scores.
- :func:`to_mono` averages channels; :func:`sanitize` replaces NaN/inf samples by 0 and counts them.
- :class:`StreamResampler` wraps ``soxr.ResampleStream`` (stateful, delay-compensated): the
  concatenated output does not depend on how the input was chunked, so streamed and whole-file
  processing see the same model-rate samples.
- Problems with one file raise :class:`AudioFileError`, whose message starts with the file name, so
  a caller processing many files can report it and carry on.
"""

from __future__ import annotations

import math
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import short_error

DEFAULT_BLOCK_FRAMES = 1 << 16
AUDIO_EXTENSIONS = frozenset((".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                              ".au", ".snd", ".caf", ".w64", ".rf64", ".wv", ".sd2", ".voc"))
"""File extensions of the formats libsndfile reads: what folders are searched for (``streamdet file``, the training
data readers). A file named explicitly is tried whatever its extension."""
MAX_BLOCK_SECONDS = 60.0  # a block holds at most this much audio (memory after resampling: this at the model rate)
MAX_BLOCK_VALUES = 1 << 22  # and at most this many samples over all channels (16 MiB of float32)
MAX_INPUT_RATE = 10_000_000  # Hz; beyond it a file is not audio (and soxr's flush alone takes seconds at 2^31 Hz)
SAMPLE_LIMIT = 1e6  # |sample| beyond this (120 dB over full scale) is corrupt data: clipped, with a warning


class AudioFileError(Exception):
    """One audio file could not be used (unreadable, empty, bad format). ``path`` names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NonFiniteSamplesWarning(UserWarning):
    """Input contained NaN or infinite samples; they were replaced by zeros."""


class TruncatedAudioWarning(UserWarning):
    """A file holds less audio than its header announces; what is there was used."""


class SampleRangeWarning(UserWarning):
    """A file held samples far beyond full scale (corrupt float data); they were clipped."""


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


# A FIFO can be read once: the handle audio_info opened is kept for the next read_blocks of the same path.
_HELD: dict[str, Any] = {}
_HELD_LOCK = threading.Lock()


def _open(path: str | Path) -> Any:
    """Open ``path`` once, by file descriptor, and hand it to libsndfile; AudioFileError naming the problem."""
    import soundfile as sf

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise AudioFileError(path, f"broken symbolic link (to {os.readlink(path)})") from None
        raise AudioFileError(path, "no such file") from None
    except OSError as exc:
        raise AudioFileError(path, f"cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise AudioFileError(path, "is a directory, not an audio file")
    fifo = stat.S_ISFIFO(mode)  # POSIX only (where O_NONBLOCK and fcntl exist)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:  # a FIFO opens without waiting for a writer; reads then wait for its data, or end at once without one
        fd = os.open(path, flags | (os.O_NONBLOCK if fifo else 0))
    except OSError as exc:
        raise AudioFileError(path, f"cannot open: {exc.strerror or exc}") from None
    if fifo:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    try:
        f = sf.SoundFile(fd, closefd=True)  # libsndfile closes the descriptor when this fails
    except Exception as exc:
        what = "a FIFO without a writer, or not audio" if fifo else "cannot decode audio"
        raise AudioFileError(path, f"{what} ({_short(exc)})") from None
    if f.samplerate > MAX_INPUT_RATE:
        f.close()
        raise AudioFileError(path, f"sample rate {f.samplerate} Hz is above the {MAX_INPUT_RATE:,} Hz streamdet reads")
    return f


def _short(exc: BaseException) -> str:
    return short_error(exc, line="last").replace("Error opening ", "").strip()


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path``; raise AudioFileError when it cannot be decoded."""
    f = _open(path)
    info = AudioInfo(str(path), int(f.samplerate), int(f.channels), int(f.frames), f"{f.format}/{f.subtype}")
    if f.seekable():
        f.close()
    else:
        with _HELD_LOCK:
            previous = _HELD.pop(str(path), None)
            _HELD[str(path)] = f
        if previous is not None:
            previous.close()
    return info


def block_frames_for(sample_rate: float, channels: int, requested: int = DEFAULT_BLOCK_FRAMES) -> int:
    """The frames of one block: ``requested``, but at most :data:`MAX_BLOCK_SECONDS` of audio at
    ``sample_rate`` and at most :data:`MAX_BLOCK_VALUES` samples over ``channels``; at least 1."""
    by_time = int(sample_rate * MAX_BLOCK_SECONDS) if sample_rate > 0 else requested
    return max(1, min(int(requested), by_time, MAX_BLOCK_VALUES // max(1, int(channels))))


def read_blocks(
    path: str | Path, block_frames: int = DEFAULT_BLOCK_FRAMES, *, allow_empty: bool = False
) -> Iterator[np.ndarray]:
    """Yield float32 ``[frames, channels]`` blocks of ``path`` in order, never the whole file at once.

    A block holds at most ``block_frames`` frames, and never more than :func:`block_frames_for` allows.
    Warns (:class:`TruncatedAudioWarning`) when the file holds less audio than its header says, and
    (:class:`SampleRangeWarning`) when samples beyond ±:data:`SAMPLE_LIMIT` were clipped.
    Raises AudioFileError for an unreadable file, a decoding error part-way, or (unless
    ``allow_empty``) a file without samples.
    """
    with _HELD_LOCK:
        f = _HELD.pop(str(path), None)
    if f is None:
        f = _open(path)
    with f:
        frames = block_frames_for(f.samplerate, f.channels, block_frames)
        total = clipped = 0
        while True:
            try:
                block = f.read(frames, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioFileError(path, f"decoding failed after {total} frames ({_short(exc)})") from None
            if block.shape[0] == 0:
                break
            total += block.shape[0]
            clipped += clip_extreme(block)
            yield block
        if total == 0 and not allow_empty:
            raise AudioFileError(path, "contains no audio samples")
        truncated = _truncation(f, total)
    if truncated:
        warnings.warn(f"{path}: truncated: {truncated}; the {total} frames there were used",
                      TruncatedAudioWarning, stacklevel=2)
    if clipped:
        warnings.warn(f"{path}: {clipped} samples beyond ±{SAMPLE_LIMIT:g} (corrupt data; full scale is ±1) "
                      f"clipped to ±{SAMPLE_LIMIT:g}", SampleRangeWarning, stacklevel=2)


_LOG_SIZE = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)  # streamed WAVs: the writer did not know the length


def _truncation(f: Any, frames_read: int) -> str | None:
    """Why ``f`` looks cut short (libsndfile's header log, or fewer frames than announced), else None."""
    try:
        log = f.extra_info
    except Exception:  # the log is a diagnostic; a failure to read it is no reason to fail the file
        log = ""
    for match in _LOG_SIZE.finditer(log):
        declared, actual = int(match.group(2)), int(match.group(3))
        if declared > actual and declared not in _UNKNOWN_SIZES:
            return f"the header announces {declared} bytes of audio data, the file holds {actual}"
    if "lacks an end-of-stream bit" in log:
        return "the last Ogg page has no end-of-stream mark"
    if f.seekable() and 0 < frames_read < f.frames * 0.99:
        return f"the header announces {f.frames} frames, the file holds {frames_read}"
    return None


def clip_extreme(block: np.ndarray) -> int:
    """Clip, in place, finite samples beyond ±:data:`SAMPLE_LIMIT` (NaN/inf are :func:`sanitize`'s); return
    how many there were."""
    big = np.abs(block) > SAMPLE_LIMIT
    if not big.any():
        return 0
    big &= np.isfinite(block)
    count = int(big.sum())
    np.copyto(block, np.sign(block) * np.float32(SAMPLE_LIMIT), where=big)
    return count


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
