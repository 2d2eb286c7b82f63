"""Post-processing: one settings object (:class:`PostProcessing`), its frame rules, and the streaming median filter.

:class:`PostProcessing` holds every post-processing setting of a detector, per class and in seconds, resolved
from the user's values, the model's metadata and the defaults, and validated once (every rule below). The
Detector, the CLI's detection options, the threshold tuner (:mod:`streamdet.train.thresholds`) and the model
metadata check (:mod:`streamdet.model_metadata`) all go through it, so a setting is added in one place.
:meth:`PostProcessing.frames` converts it to :class:`FrameRules` on a score track's frame grid, which the event
tracker (:mod:`streamdet.tracker`) applies.

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
largest over the classes) of audio at most, plus compute time (:meth:`FrameRules.onset_delay` adds the last two).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_OFF",
    "DEFAULT_ON",
    "MAX_SECONDS",
    "OFF_RATIO",
    "SECONDS_SETTINGS",
    "FrameRules",
    "PostProcessing",
    "SecondsSpec",
    "StreamingMedian",
    "ThresholdSpec",
    "check_seconds",
    "check_threshold_pair",
    "resolve_seconds",
    "resolve_thresholds",
]

DEFAULT_ON = 0.5
DEFAULT_OFF = 0.3
OFF_RATIO = 0.6
SECONDS_SETTINGS = ("min_duration", "min_gap")  # the per-class seconds settings (the model's ``postprocess`` keys)
MAX_SECONDS = 86_400.0  # one day: the most any seconds setting may be (beyond it, frame counts overflow int64)

ThresholdSpec = float | tuple[float, float] | Mapping[str, float | tuple[float, float]] | None
SecondsSpec = float | Mapping[str, float] | None


def check_threshold_pair(on: Any, off: Any, where: str) -> tuple[float, float]:
    """``(on, off)`` as floats, or ValueError (``thresholds: {where} ...``) unless ``0 <= off <= on <= 1``."""
    try:
        on, off = float(on), float(off)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"thresholds: {where} must be numbers, got on={on!r}, off={off!r}") from None
    if not 0.0 <= off <= on <= 1.0:
        raise ValueError(f"thresholds: {where} needs 0 <= off <= on <= 1, got on={on}, off={off}")
    return on, off


def check_seconds(name: str, value: Any, where: str) -> float:
    """``value`` as seconds, or ValueError (``{name}: ...``) unless it is a number from 0 to :data:`MAX_SECONDS`
    (NaN and inf refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected seconds for {where}, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int past 1.8e308
        seconds = math.inf
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS):
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        raise ValueError(f"{name} must be >= 0 seconds (finite, at most {MAX_SECONDS:g}), got {shown} for {where}")
    return seconds


def _pair(value: float | Sequence[float], where: str) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return check_threshold_pair(value, OFF_RATIO * float(value), where)
    try:
        on, off = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"thresholds: {where} must be a number or an (on, off) pair, got {value!r}") from None
    return check_threshold_pair(on, off, where)


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
            result[label] = check_seconds(name, values[name], repr(label))
    if user is None:
        return result
    items = user.items() if isinstance(user, Mapping) else ((label, user) for label in labels)
    for label, value in items:
        if label not in result:
            raise ValueError(f"{name}: unknown label {label!r} (labels: {', '.join(labels)})")
        result[label] = check_seconds(name, value, repr(label))
    return result


@dataclass(frozen=True)
class PostProcessing:
    """Every post-processing setting, per class, in seconds; validated when built (see the module docstring).

    ``thresholds`` ``{label: (on, off)}``, ``min_duration`` and ``min_gap`` ``{label: seconds}`` name every
    label; ``median_filter`` is one width in seconds for all classes (0: off).
    """

    labels: tuple[str, ...]
    thresholds: Mapping[str, tuple[float, float]]
    min_duration: Mapping[str, float]
    min_gap: Mapping[str, float]
    median_filter: float = 0.0

    def __post_init__(self) -> None:
        labels = tuple(self.labels)
        object.__setattr__(self, "labels", labels)
        if not labels or len(set(labels)) != len(labels):
            raise ValueError("post-processing needs unique labels")
        checked = {}
        for name, values in (("thresholds", self.thresholds), ("min_duration", self.min_duration),
                             ("min_gap", self.min_gap)):
            unknown = sorted(set(values) - set(labels))
            missing = [label for label in labels if label not in values]
            if unknown or missing:
                what = f"unknown label {unknown[0]!r}" if unknown else f"no value for {missing[0]!r}"
                raise ValueError(f"{name}: {what} (labels: {', '.join(labels)})")
            if name == "thresholds":
                checked[name] = {label: check_threshold_pair(*values[label], repr(label)) for label in labels}
            else:
                checked[name] = {label: check_seconds(name, values[label], repr(label)) for label in labels}
        for name, values in checked.items():
            object.__setattr__(self, name, values)
        object.__setattr__(self, "median_filter", check_seconds("median_filter", self.median_filter, "every class"))

    @classmethod
    def resolve(
        cls,
        labels: Sequence[str],
        *,
        model_thresholds: Mapping[str, tuple[float, float]] | None = None,
        model_postprocess: Mapping[str, Mapping[str, float]] | None = None,
        thresholds: ThresholdSpec = None,
        median_filter: float = 0.0,
        min_duration: SecondsSpec = None,
        min_gap: SecondsSpec = None,
    ) -> PostProcessing:
        """The settings from the user's values (None: the model's), the model's metadata (``thresholds``,
        ``postprocess``) and the defaults (0.5 / 0.3, 0 s); ValueError names a bad setting."""
        return cls(
            labels=tuple(labels),
            thresholds=resolve_thresholds(labels, model_thresholds, thresholds),
            min_duration=resolve_seconds("min_duration", labels, model_postprocess, min_duration),
            min_gap=resolve_seconds("min_gap", labels, model_postprocess, min_gap),
            median_filter=median_filter,
        )

    def replace(self, **changes: Any) -> PostProcessing:
        """A copy with some settings overridden (same forms as :meth:`resolve`: numbers, pairs or mappings)."""
        return PostProcessing.resolve(
            self.labels,
            model_thresholds=self.thresholds,
            model_postprocess={label: {"min_duration": self.min_duration[label], "min_gap": self.min_gap[label]}
                               for label in self.labels},
            median_filter=changes.pop("median_filter", self.median_filter),
            **changes,
        )

    def subset(self, labels: Sequence[str]) -> PostProcessing:
        """The settings of ``labels`` only (e.g. to tune one class at a time)."""
        return PostProcessing(tuple(labels), {k: self.thresholds[k] for k in labels},
                              {k: self.min_duration[k] for k in labels}, {k: self.min_gap[k] for k in labels},
                              self.median_filter)

    def metadata(self) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
        """The model-metadata form: ``(thresholds {label: [on, off]}, postprocess {label: {"min_duration",
        "min_gap"}})``."""
        return ({k: [float(v[0]), float(v[1])] for k, v in self.thresholds.items()},
                {k: {"min_duration": self.min_duration[k], "min_gap": self.min_gap[k]} for k in self.labels})

    def frames(self, frame_seconds: float) -> FrameRules:
        """These settings on a grid of ``frame_seconds`` frames (seconds rounded to the nearest frame)."""
        if not (frame_seconds > 0 and math.isfinite(frame_seconds)):
            raise ValueError(f"frame_seconds must be positive, got {frame_seconds}")
        median = round(self.median_filter / frame_seconds)
        median = median if median % 2 == 1 else median - 1 if median > 1 else 1
        return FrameRules(
            on=np.array([self.thresholds[label][0] for label in self.labels], np.float32),
            off=np.array([self.thresholds[label][1] for label in self.labels], np.float32),
            median_frames=max(1, median),
            min_duration_frames=np.array([round(self.min_duration[k] / frame_seconds) for k in self.labels], np.int64),
            min_gap_frames=np.array([round(self.min_gap[k] / frame_seconds) for k in self.labels], np.int64),
        )


@dataclass(frozen=True)
class FrameRules:
    """Post-processing in frames of a score track (from :meth:`PostProcessing.frames`), per class in label order."""

    on: np.ndarray  # [C] float
    off: np.ndarray  # [C] float
    median_frames: int
    min_duration_frames: np.ndarray  # [C] int
    min_gap_frames: np.ndarray  # [C] int

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
