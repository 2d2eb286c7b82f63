"""Post-processing settings and the streaming median filter applied to the stitched score track.

Thresholds (hysteresis, per class): an event starts on the first frame whose score is >= ``on``
and ends on the first frame whose score is < ``off`` (``off <= on``). Defaults, per class:

1. the model's ``thresholds`` metadata (``{label: [on, off]}``) when it names the class;
2. otherwise ``on = 0.5``, ``off = 0.3`` (:data:`DEFAULT_ON`, :data:`DEFAULT_OFF`).

A user value overrides them: a number sets ``on`` for every class with ``off = 0.6 * on`` (so 0.5
gives the 0.5/0.3 default pair); an ``(on, off)`` pair sets both for every class; a mapping
``{label: number | (on, off)}`` overrides the named classes only.

Other settings (seconds; converted to whole frames of the score track, rounded to nearest):

- ``median_filter``: width of a centred running median over each class's track (odd number of
  frames; 0 or anything under 3 frames disables it). Edges repeat the first/last frame. It delays
  every decision by half its width.
- ``min_duration``: events shorter than this are dropped; an onset is only reported once the event
  has lasted this long (its timestamp is still the true onset).
- ``min_gap``: an event whose score comes back above ``on`` within this time after falling below
  ``off`` continues (the gap is merged); offsets are reported this much later.

``min_duration`` and ``min_gap`` are per class. Defaults, per class: the model's ``postprocess``
metadata (``{label: {"min_duration": s, "min_gap": s}}``, tuned with the thresholds) when it names the
class, otherwise 0. A user number overrides every class; a mapping ``{label: seconds}`` the named
ones. The median filter is one width for all classes (default 0: off).

So the onset of an event is reported after ``hop + lookahead + median_filter/2 + min_duration`` (the
largest over the classes) of audio at most, plus compute time (:attr:`PostProcessing.onset_delay` adds the last two).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_ON = 0.5
DEFAULT_OFF = 0.3
OFF_RATIO = 0.6

ThresholdSpec = float | tuple[float, float] | Mapping[str, float | tuple[float, float]] | None
SecondsSpec = float | Mapping[str, float] | None


def _pair(value: float | Sequence[float], where: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        on, off = float(value), OFF_RATIO * float(value)
    else:
        try:
            on, off = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"thresholds: {where} must be a number or an (on, off) pair, got {value!r}") from None
    if not 0.0 <= off <= on <= 1.0:
        raise ValueError(f"thresholds: {where} needs 0 <= off <= on <= 1, got on={on}, off={off}")
    return on, off


def resolve_thresholds(
    labels: Sequence[str],
    model_thresholds: Mapping[str, tuple[float, float]] | None = None,
    user: ThresholdSpec = None,
) -> dict[str, tuple[float, float]]:
    """Per-class ``(on, off)`` thresholds from the user value, the model metadata and the defaults."""
    result = {label: (DEFAULT_ON, DEFAULT_OFF) for label in labels}
    for label, pair in (model_thresholds or {}).items():
        if label in result:
            result[label] = (float(pair[0]), float(pair[1]))
    if user is None:
        return result
    if isinstance(user, Mapping):
        for label, value in user.items():
            if label not in result:
                raise ValueError(f"thresholds: unknown label {label!r} (labels: {', '.join(labels)})")
            result[label] = _pair(value, repr(label))
        return result
    pair = _pair(user, "the value")
    return dict.fromkeys(labels, pair)


def resolve_seconds(
    name: str,
    labels: Sequence[str],
    model_post: Mapping[str, Mapping[str, float]] | None = None,
    user: SecondsSpec = None,
) -> dict[str, float]:
    """Per-class seconds of the ``name`` setting (``min_duration`` / ``min_gap``) from the user value, the
    model's ``postprocess`` metadata and the default 0."""
    result = dict.fromkeys(labels, 0.0)
    for label, values in (model_post or {}).items():
        if label in result and name in values:
            result[label] = float(values[name])
    if user is None:
        return result
    items = user.items() if isinstance(user, Mapping) else ((label, user) for label in labels)
    for label, value in items:
        if label not in result:
            raise ValueError(f"{name}: unknown label {label!r} (labels: {', '.join(labels)})")
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected seconds for {label!r}, got {value!r}") from None
        result[label] = seconds
    return result


def _frames(name: str, value: float | Mapping[str, float], labels: Sequence[str], frame_seconds: float) -> np.ndarray:
    per = value if isinstance(value, Mapping) else dict.fromkeys(labels, value)
    out = []
    for label in labels:
        seconds = float(per.get(label, 0.0))
        if not seconds >= 0:
            raise ValueError(f"{name} must be >= 0 seconds, got {seconds} for {label!r}")
        out.append(round(seconds / frame_seconds))
    return np.array(out, np.int64)


@dataclass(frozen=True)
class PostProcessing:
    """Post-processing settings in frames of the score track (see the module docstring)."""

    on: np.ndarray  # [C] float
    off: np.ndarray  # [C] float
    median_frames: int
    min_duration_frames: np.ndarray  # [C] int
    min_gap_frames: np.ndarray  # [C] int

    @classmethod
    def create(
        cls,
        thresholds: Mapping[str, tuple[float, float]],
        labels: Sequence[str],
        frame_seconds: float,
        median_filter: float = 0.0,
        min_duration: float | Mapping[str, float] = 0.0,
        min_gap: float | Mapping[str, float] = 0.0,
    ) -> PostProcessing:
        """Convert seconds to frames of ``frame_seconds``; ``min_duration``/``min_gap`` are one value for
        every class or ``{label: seconds}`` (missing labels: 0)."""
        if not median_filter >= 0:
            raise ValueError(f"median_filter must be >= 0 seconds, got {median_filter}")
        median = round(median_filter / frame_seconds)
        median = median if median % 2 == 1 else median - 1 if median > 1 else 1
        return cls(
            on=np.array([thresholds[label][0] for label in labels], np.float32),
            off=np.array([thresholds[label][1] for label in labels], np.float32),
            median_frames=max(1, median),
            min_duration_frames=_frames("min_duration", min_duration, labels, frame_seconds),
            min_gap_frames=_frames("min_gap", min_gap, labels, frame_seconds),
        )

    @property
    def median_delay_frames(self) -> int:
        """Frames the median filter holds back."""
        return self.median_frames // 2

    def onset_delay(self, frame_seconds: float) -> float:
        """Seconds of audio by which median filter and minimum duration delay an onset report."""
        longest = int(self.min_duration_frames.max()) if self.min_duration_frames.size else 0
        return (self.median_delay_frames + longest) * frame_seconds


class StreamingMedian:
    """A centred running median of odd width over ``[frames, C]`` rows fed in order.

    :meth:`push` returns the filtered rows that became final (delayed by ``width // 2``) together with
    the matching raw rows; :meth:`flush` pads the end with the last row and returns the rest.
    """

    def __init__(self, width: int, num_classes: int) -> None:
        self.width = max(1, width)
        self.half = self.width // 2
        self._buf = np.zeros((0, num_classes), np.float32)
        self._started = False

    def push(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed new raw rows; return ``(filtered, raw)`` rows now final."""
        if self.width == 1 or rows.shape[0] == 0:
            return rows, rows
        if not self._started:
            self._buf = np.repeat(rows[:1], self.half, axis=0)  # edge: repeat the first row
            self._started = True
        buf = np.concatenate([self._buf, rows])
        n = buf.shape[0] - self.width + 1
        if n <= 0:
            self._buf = buf
            return rows[:0], rows[:0]
        windows = np.lib.stride_tricks.sliding_window_view(buf, self.width, axis=0)[:n]
        filtered = np.median(windows, axis=-1).astype(np.float32)
        raw = buf[self.half : self.half + n]
        self._buf = buf[n:]
        return filtered, raw

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """Pad with the last row and return the remaining ``(filtered, raw)`` rows."""
        if self.width == 1 or not self._started:
            return self._buf[:0], self._buf[:0]
        pending = self._buf.shape[0] - self.half  # raw rows still waiting for their future
        if pending <= 0:
            return self._buf[:0], self._buf[:0]
        pad = np.repeat(self._buf[-1:], self.half, axis=0)
        buf = np.concatenate([self._buf, pad])
        windows = np.lib.stride_tricks.sliding_window_view(buf, self.width, axis=0)[:pending]
        filtered = np.median(windows, axis=-1).astype(np.float32)
        raw = buf[self.half : self.half + pending]
        self._buf = buf[:0]
        return filtered, raw
