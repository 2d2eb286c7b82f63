"""Label maps: choose and group a model's classes at run time (``--classes``, ``--label-map``, ``label_map=``).

A label map is ``{new_label: [model labels...]}``: each new label (a *group*) scores, frame by frame, the
**maximum** of its members' scores on the stitched score track, before any post-processing (median filter,
hysteresis, minimum duration and gap), so a group fires whenever one of its members would. ``--classes a,b`` is
the map of each named label to itself (a subset). The one place these decisions live:

- :class:`LabelMap` — a validated map, independent of any model: :func:`load_label_map` reads one from a JSON or
  YAML file or a built-in name (:func:`builtin_label_maps`: maps for AudioSet models shipped in
  ``streamdet/data/label_maps/``), :meth:`LabelMap.from_classes` makes the subset map, :meth:`LabelMap.select`
  keeps some of a map's groups.
- :class:`ScoreMap` — a map resolved against a model's labels (:meth:`LabelMap.resolve`): the member columns of
  every group, :meth:`ScoreMap.apply` (``[..., model classes] -> [..., groups]``, max over members) and the
  groups' default post-processing.

File form (JSON, or YAML when PyYAML is installed)::

    {"alarm": ["Smoke detector, smoke alarm", "Fire alarm", "Alarm clock"],
     "dog": {"labels": ["Dog", "Bark"], "threshold": 0.4, "min_duration": 0.2, "min_gap": 1.0}}

``threshold`` is ``ON`` (then ``OFF = 0.6 * ON``, as ``--threshold``) or ``[ON, OFF]``. A group's settings that the
file does not give come from its members (the model's tuned values, else streamdet's defaults): the **minimum**
of the members' on- and off-thresholds and minimum durations, and the **maximum** of their minimum gaps. So an
event any member would have reported on its own is reported by the group, and a gap any member would have
bridged is bridged; a one-member group keeps its member's settings exactly. The command-line detection options
(``--threshold``, ``--thresholds``, ``--min-duration``, ``--min-gap``) override both, per new label.

Errors are :class:`LabelMapError` (a ValueError) naming the map (its file or built-in name) and the problem:
a model label the model does not have (with close matches), an empty group, a new label given twice, a bad
file, bad JSON or YAML, an unknown key.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .postprocess import DEFAULT_OFF, DEFAULT_ON, OFF_RATIO, check_seconds, check_threshold_pair

__all__ = [
    "GROUP_KEYS",
    "LabelGroup",
    "LabelMap",
    "LabelMapError",
    "ScoreMap",
    "builtin_label_maps",
    "load_label_map",
    "resolve_label_map",
    "split_classes",
]

GROUP_KEYS = ("labels", "threshold", "min_duration", "min_gap")  # the keys of a group's object form
BUILTIN_PACKAGE = "streamdet.data"
BUILTIN_FOLDER = "label_maps"
MAX_SHOWN = 5  # missing labels named in one error message


class LabelMapError(ValueError):
    """A label map that cannot be used; the message names the map and the problem."""


@dataclass(frozen=True)
class LabelGroup:
    """One new label: its member model labels and the post-processing the map gives it (None: from the members)."""

    label: str
    members: tuple[str, ...]
    threshold: tuple[float, float] | None = None
    min_duration: float | None = None
    min_gap: float | None = None


@dataclass(frozen=True)
class LabelMap:
    """A validated label map (not yet tied to a model); ``source`` names it in messages (a file, a built-in name,
    ``--classes``)."""

    groups: tuple[LabelGroup, ...]
    source: str = "label map"
    builtin: bool = False  # one of the maps shipped for AudioSet models

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        if not self.groups:
            raise LabelMapError(f"{self.source}: the map has no labels")
        seen: set[str] = set()
        for group in self.groups:
            if group.label in seen:
                raise LabelMapError(f"{self.source}: the new label {group.label!r} is given twice")
            seen.add(group.label)
            if not group.members:
                raise LabelMapError(f"{self.source}: the group {group.label!r} is empty (it needs at least one "
                                    "model label)")

    @property
    def labels(self) -> tuple[str, ...]:
        """The new labels, in the map's order."""
        return tuple(group.label for group in self.groups)

    @classmethod
    def from_dict(cls, data: Any, source: str = "label map") -> LabelMap:
        """The map of ``data`` (the file form, see the module docstring), or LabelMapError naming ``source``."""
        if not isinstance(data, Mapping) or not data:
            raise LabelMapError(f'{source}: expected a non-empty object {{"new label": ["model label", ...]}}, '
                                f"got {_shown(data)}")
        return cls(tuple(_group(label, value, source) for label, value in data.items()), source)

    @classmethod
    def from_classes(cls, classes: Iterable[str], source: str = "--classes") -> LabelMap:
        """The map of each of ``classes`` to itself: keep those classes only."""
        names = list(classes)
        for name in names:
            _check_name(name, source, "class")
        return cls(tuple(LabelGroup(name, (name,)) for name in names), source)

    def select(self, classes: Sequence[str], source: str = "--classes") -> LabelMap:
        """The groups named in ``classes`` only, in that order (LabelMapError for a name the map lacks)."""
        by_label = {group.label: group for group in self.groups}
        missing = [name for name in classes if name not in by_label]
        if missing:
            raise LabelMapError(_missing_message(source, missing, self.labels, self.source))
        return LabelMap(tuple(by_label[name] for name in classes), f"{self.source} ({source})", self.builtin)

    def resolve(
        self,
        model_labels: Sequence[str],
        model_thresholds: Mapping[str, tuple[float, float]] | None = None,
        model_postprocess: Mapping[str, Mapping[str, float]] | None = None,
    ) -> ScoreMap:
        """This map on a model with ``model_labels`` (and its tuned ``thresholds`` / ``postprocess`` metadata), or
        LabelMapError naming every member the model lacks, with close matches."""
        index = {label: i for i, label in enumerate(model_labels)}
        missing = list(dict.fromkeys(m for group in self.groups for m in group.members if m not in index))
        if missing:
            hint = ""
            if self.builtin:
                hint = "; the built-in maps name AudioSet ontology classes: use them with AudioSet (527-class) models"
            raise LabelMapError(_missing_message(self.source, missing, model_labels, "the model") + hint)
        thresholds: dict[str, tuple[float, float]] = {}
        postprocess: dict[str, dict[str, float]] = {}
        for group in self.groups:
            pairs = [_model_pair(m, model_thresholds) for m in group.members]
            on, off = (min(p[0] for p in pairs), min(p[1] for p in pairs))
            thresholds[group.label] = group.threshold or (on, off)
            member_post = [(model_postprocess or {}).get(m, {}) for m in group.members]
            durations = [float(p.get("min_duration", 0.0)) for p in member_post]
            gaps = [float(p.get("min_gap", 0.0)) for p in member_post]
            postprocess[group.label] = {
                "min_duration": min(durations) if group.min_duration is None else group.min_duration,
                "min_gap": max(gaps) if group.min_gap is None else group.min_gap,
            }
        members = tuple(tuple(index[m] for m in group.members) for group in self.groups)
        return ScoreMap(self, tuple(model_labels), members, thresholds, postprocess)


@dataclass(frozen=True, eq=False)
class ScoreMap:
    """A :class:`LabelMap` resolved against a model: ``members[g]`` are the model's columns of group ``g``;
    ``thresholds`` / ``postprocess`` the groups' settings in the model-metadata form (see the module docstring)."""

    label_map: LabelMap
    model_labels: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]
    thresholds: Mapping[str, tuple[float, float]]
    postprocess: Mapping[str, Mapping[str, float]]
    _columns: np.ndarray = field(init=False, repr=False)  # every group's member columns, one group after another
    _starts: np.ndarray = field(init=False, repr=False)  # where each group starts in _columns

    def __post_init__(self) -> None:
        object.__setattr__(self, "_columns", np.array([c for m in self.members for c in m], np.intp))
        object.__setattr__(self, "_starts", np.cumsum([0] + [len(m) for m in self.members[:-1]]).astype(np.intp))

    @property
    def labels(self) -> tuple[str, ...]:
        """The new labels, in output order."""
        return self.label_map.labels

    def describe(self) -> dict[str, dict[str, Any]]:
        """The resolved map in the file form, every setting filled in: ``{label: {"labels": [...], "threshold":
        [on, off], "min_duration": s, "min_gap": s}}`` (a valid label map itself)."""
        return {group.label: {"labels": list(group.members), "threshold": list(self.thresholds[group.label]),
                              "min_duration": self.postprocess[group.label]["min_duration"],
                              "min_gap": self.postprocess[group.label]["min_gap"]}
                for group in self.label_map.groups}

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Scores ``[..., model classes]`` to ``[..., new labels]``: each new label the maximum of its members."""
        if scores.shape[-1] != len(self.model_labels):
            raise ValueError(f"expected scores of {len(self.model_labels)} classes, got shape {scores.shape}")
        taken = scores[..., self._columns]
        if len(self._columns) == len(self.members):  # one member each: a subset (or a renaming)
            return taken
        return np.maximum.reduceat(taken, self._starts, axis=-1)


def builtin_label_maps() -> list[str]:
    """The names of the label maps shipped with streamdet (``--label-map NAME``), sorted."""
    folder = resources.files(BUILTIN_PACKAGE).joinpath(BUILTIN_FOLDER)
    if not folder.is_dir():
        return []
    return sorted(entry.name[: -len(".json")] for entry in folder.iterdir() if entry.name.endswith(".json"))


def load_label_map(spec: str | os.PathLike[str] | Mapping[str, Any] | LabelMap) -> LabelMap:
    """A label map from a :class:`LabelMap`, the file form as a mapping, the name of a built-in map (a name without
    a path separator that :func:`builtin_label_maps` lists) or a JSON / YAML file (``.yaml`` / ``.yml``
    need PyYAML); LabelMapError names the file and the problem."""
    if isinstance(spec, LabelMap):
        return spec
    if isinstance(spec, Mapping):
        return LabelMap.from_dict(spec)
    text = os.fspath(spec)
    if text in builtin_label_maps() and os.sep not in text and "/" not in text:
        resource = resources.files(BUILTIN_PACKAGE).joinpath(BUILTIN_FOLDER, f"{text}.json")
        source = f"label map {text}"
        builtin = LabelMap.from_dict(_parse_json(resource.read_text("utf-8"), source), source)
        return LabelMap(builtin.groups, source, builtin=True)
    path = Path(text)
    if not path.is_file():
        names = ", ".join(builtin_label_maps()) or "none"
        what = "no such file" if not path.exists() else "not a file"
        raise LabelMapError(f"label map {text}: {what} (and not a built-in map: {names})")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelMapError(f"label map {text}: cannot read it ({exc})") from None
    source = f"label map {text}"
    yaml = path.suffix.lower() in (".yaml", ".yml")
    return LabelMap.from_dict(_parse_yaml(content, source) if yaml else _parse_json(content, source), source)


def split_classes(text: str, known: Sequence[str]) -> list[str]:
    """``--classes``: the names in ``text``, split at commas except where the joined parts name one of ``known``
    (AudioSet's ``Smoke detector, smoke alarm`` stays whole). LabelMapError for an empty name."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise LabelMapError(f"--classes: expected names separated by commas, got {text!r}")
    known_set = set(known)
    names: list[str] = []
    i = 0
    while i < len(parts):
        end = next((j for j in range(len(parts), i + 1, -1) if ", ".join(parts[i:j]) in known_set), i + 1)
        names.append(", ".join(parts[i:end]))
        i = end
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise LabelMapError(f"--classes: {twice!r} is given twice")
    return names


def resolve_label_map(
    model_labels: Sequence[str],
    model_thresholds: Mapping[str, tuple[float, float]] | None = None,
    model_postprocess: Mapping[str, Mapping[str, float]] | None = None,
    label_map: str | os.PathLike[str] | Mapping[str, Any] | LabelMap | None = None,
    classes: str | Sequence[str] | None = None,
) -> ScoreMap | None:
    """The Detector's ``label_map`` and ``classes`` arguments on a model: ``label_map`` (anything
    :func:`load_label_map` takes) groups the model's classes, ``classes`` (a list, or one comma-separated string as
    :func:`split_classes` reads it) keeps some of the map's labels, or of the model's when there is no map. None
    when neither is given (the model's labels as they are)."""
    if label_map is None and classes is None:
        return None
    chosen = load_label_map(label_map) if label_map is not None else None
    if classes is not None:
        available = chosen.labels if chosen is not None else tuple(model_labels)
        names = split_classes(classes, available) if isinstance(classes, str) else list(classes)
        chosen = chosen.select(names) if chosen is not None else LabelMap.from_classes(names)
    assert chosen is not None
    return chosen.resolve(model_labels, model_thresholds, model_postprocess)


# --- helpers -------------------------------------------------------------------------------------------------
def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _check_name(name: Any, source: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise LabelMapError(f"{source}: a {what} must be a non-empty string, got {_shown(name)}")
    return name


def _group(label: Any, value: Any, source: str) -> LabelGroup:
    label = _check_name(label, source, "new label")
    where = f"{source}: group {label!r}"
    options: Mapping[str, Any] = {}
    if isinstance(value, Mapping):
        unknown = [key for key in value if key not in GROUP_KEYS]
        if unknown:
            raise LabelMapError(f"{where}: unknown key {_shown(unknown[0])} (keys: {', '.join(GROUP_KEYS)})")
        if "labels" not in value:
            raise LabelMapError(f'{where}: the object form needs "labels": [model labels]')
        options, value = value, value["labels"]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise LabelMapError(f"{where}: expected a list of model labels, got {_shown(value)}")
    members = tuple(_check_name(m, where, "model label") for m in value)
    twice = next((m for i, m in enumerate(members) if m in members[:i]), None)
    if twice is not None:
        raise LabelMapError(f"{where}: the model label {twice!r} is listed twice")
    if not members:
        raise LabelMapError(f"{where} is empty (it needs at least one model label)")
    threshold = None
    if options.get("threshold") is not None:
        threshold = _threshold(options["threshold"], where)
    seconds = {}
    for key in ("min_duration", "min_gap"):
        if options.get(key) is not None:
            try:
                seconds[key] = check_seconds(key, options[key], "the group")
            except ValueError as exc:
                raise LabelMapError(f"{where}: {exc}") from None
    return LabelGroup(label, members, threshold, seconds.get("min_duration"), seconds.get("min_gap"))


def _threshold(value: Any, where: str) -> tuple[float, float]:
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return check_threshold_pair(value, OFF_RATIO * float(value), "the group")
        if isinstance(value, (list, tuple)) and len(value) == 2 and not any(isinstance(v, bool) for v in value):
            return check_threshold_pair(value[0], value[1], "the group")
    except ValueError as exc:
        raise LabelMapError(f"{where}: {exc}") from None
    raise LabelMapError(f"{where}: threshold must be ON or [ON, OFF] (numbers in [0, 1]), got {_shown(value)}")


def _model_pair(label: str, model_thresholds: Mapping[str, tuple[float, float]] | None) -> tuple[float, float]:
    pair = (model_thresholds or {}).get(label)
    return (float(pair[0]), float(pair[1])) if pair is not None else (DEFAULT_ON, DEFAULT_OFF)


def _suggestions(name: str, labels: Sequence[str]) -> list[str]:
    lowered = {label.lower(): label for label in labels}
    key = name.lower()
    close = [lowered[m] for m in difflib.get_close_matches(key, list(lowered), n=3, cutoff=0.6)]
    contains = [label for low, label in lowered.items() if min(len(key), len(low)) >= 3 and (key in low or low in key)]
    return list(dict.fromkeys(close + sorted(contains, key=len)))[:3]


def _missing_message(source: str, missing: Sequence[str], labels: Sequence[str], owner: str) -> str:
    parts = []
    for name in missing[:MAX_SHOWN]:
        close = _suggestions(name, labels)
        parts.append(f"{name!r}" + (f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""))
    more = f" and {len(missing) - MAX_SHOWN} more" if len(missing) > MAX_SHOWN else ""
    listing = f" ({owner} has: {', '.join(labels)})" if len(labels) <= 20 else ""
    return f"{source}: {len(missing)} label(s) not in {owner}: {', '.join(parts)}{more}{listing}"


def _parse_json(text: str, source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise LabelMapError(f"{source}: the key {key!r} is given twice")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise LabelMapError(f"{source}: not valid JSON ({exc})") from None


def _parse_yaml(text: str, source: str) -> Any:
    from .extras import import_extra

    try:
        yaml = import_extra("yaml", "yaml", f"the YAML label map {source}")
    except ImportError as exc:
        raise LabelMapError(f"{exc} (or write the map as JSON)") from None

    class UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[name-defined,misc]
        """SafeLoader that refuses a key given twice (PyYAML keeps the last one silently)."""

    def mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in out:
                raise LabelMapError(f"{source}: the key {key!r} is given twice (line {key_node.start_mark.line + 1})")
            out[key] = loader.construct_object(value_node, deep=deep)
        return out

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except TypeError as exc:  # an unhashable key ([a, b]: ...)
        raise LabelMapError(f"{source}: not a usable YAML map ({exc})") from None
    except yaml.YAMLError as exc:
        raise LabelMapError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None
