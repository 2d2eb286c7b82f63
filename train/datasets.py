"""Dataset readers and a numpy window loader for training.

Readers return :class:`AudioRecord` lists:
  * :func:`read_clip_folder` - ``ROOT/LABEL/*.wav`` folders (weak labels);
  * :func:`read_audioset_csv` - AudioSet segment CSVs (``YTID, start_seconds, end_seconds,
    positive_labels``) with the class-label index CSV; audio files are found by YouTube id (weak);
  * :func:`read_desed_tsv` - DESED/DCASE TSVs, strong (``filename onset offset event_label``) or
    weak (``filename event_labels``);
  * :func:`read_scenes` - a split written by :func:`streamdet.train.synth.synthesize_split` (strong).

:func:`load_window` turns a record into a fixed-length waveform plus clip targets ``[C]`` and frame
targets ``[steps, C]``; the trainer wraps it in a torch ``Dataset``.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from streamdet.audio_io import AUDIO_EXTENSIONS  # the one list: folders are searched for these

# AudioSet display names -> alerts classes (a default ``label_map`` for read_audioset_csv).
AUDIOSET_ALERTS_MAP: dict[str, str] = {
    "Alarm": "alarm",
    "Smoke detector, smoke alarm": "alarm",
    "Fire alarm": "alarm",
    "Alarm clock": "alarm",
    "Siren": "siren",
    "Civil defense siren": "siren",
    "Police car (siren)": "siren",
    "Ambulance (siren)": "siren",
    "Fire engine, fire truck (siren)": "siren",
    "Emergency vehicle": "siren",
    "Telephone bell ringing": "phone_ring",
    "Ringtone": "phone_ring",
    "Telephone": "phone_ring",
    "Doorbell": "doorbell",
    "Ding-dong": "doorbell",
    "Knock": "knock",
    "Vehicle horn, car horn, honking": "car_horn",
    "Toot": "car_horn",
    "Speech": "speech",
    "Male speech, man speaking": "speech",
    "Female speech, woman speaking": "speech",
    "Child speech, kid speaking": "speech",
    "Conversation": "speech",
    "Narration, monologue": "speech",
}


@dataclass(frozen=True)
class StrongEvent:
    """A labelled interval (seconds from the start of the file)."""

    label: str
    onset: float
    offset: float


@dataclass(frozen=True)
class AudioRecord:
    """One audio file with its labels.

    ``labels``: weak (clip-level) labels. ``events``: strong labels, or None when only weak labels
    are known. ``duration`` in seconds (None if unknown until the file is opened).
    """

    path: Path
    duration: float | None
    labels: tuple[str, ...]
    events: tuple[StrongEvent, ...] | None = None

    @property
    def strong(self) -> bool:
        """True when the record has strong (timed) labels."""
        return self.events is not None


@dataclass
class Window:
    """A training example: ``audio`` [window_samples] float32, ``clip_target`` [C], ``frame_target``
    [steps, C] (float32), ``strong`` (frame targets are meaningful), ``start`` (seconds in the file)."""

    audio: np.ndarray
    clip_target: np.ndarray
    frame_target: np.ndarray
    strong: bool
    start: float


def audio_duration(path: str | Path) -> float:
    """Duration of an audio file in seconds (from its header)."""
    info = sf.info(str(path))
    return info.frames / info.samplerate


def load_audio(path: str | Path, sample_rate: int, start: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Read ``[start, start + duration)`` seconds of a file as mono float32 at ``sample_rate``."""
    with sf.SoundFile(str(path)) as f:
        sr = f.samplerate
        first = max(0, round(start * sr))
        if first:
            f.seek(min(first, f.frames))
        frames = -1 if duration is None else max(0, round(duration * sr))
        x = f.read(frames, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != sample_rate and len(x):
        x = soxr.resample(x, sr, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)


def scan_clip_folders(root: str | Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> dict[str, list[Path]]:
    """Map each sub-folder name of ``root`` to its audio files (searched recursively, sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"clip folder root not found: {root}")
    exts = {e.lower() for e in extensions}
    return {
        d.name: sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        for d in sorted(root.iterdir())
        if d.is_dir()
    }


def read_clip_folder(
    root: str | Path,
    labels: Sequence[str] | None = None,
    label_map: Mapping[str, str] | None = None,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
) -> list[AudioRecord]:
    """Weak records from ``ROOT/LABEL/*.wav``; ``label_map`` renames folders, ``labels`` filters them.

    Folders whose (mapped) label is not in ``labels`` are kept as negatives (empty label set).
    """
    records = []
    for folder, paths in scan_clip_folders(root, extensions).items():
        label = (label_map or {}).get(folder, folder)
        keep = labels is None or label in labels
        records += [AudioRecord(p, audio_duration(p), (label,) if keep else ()) for p in paths]
    return records


def _read_label_index(path: str | Path) -> dict[str, str]:
    """AudioSet ``class_labels_indices.csv`` (index, mid, display_name) -> {mid: display_name}."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    start = 1 if rows and rows[0] and rows[0][0].strip().lower() == "index" else 0
    return {r[1].strip(): r[2].strip() for r in rows[start:] if len(r) >= 3}


def _index_audio(audio_dir: str | Path, extensions: Sequence[str]) -> dict[str, Path]:
    exts = {e.lower() for e in extensions}
    return {p.stem: p for p in sorted(Path(audio_dir).rglob("*")) if p.is_file() and p.suffix.lower() in exts}


def _find_by_id(index: Mapping[str, Path], ytid: str, start: float) -> Path | None:
    ms = round(start * 1000)
    for key in (
        ytid,
        "Y" + ytid,
        f"{ytid}_{ms}",
        f"{ytid}_{start:.3f}",
        f"{ytid}_{int(start)}",
        f"{ytid}_{ms}_{ms + 10000}",
        f"Y{ytid}_{start:.3f}_{start + 10:.3f}",
    ):
        if key in index:
            return index[key]
    return None


def read_audioset_csv(
    csv_path: str | Path,
    label_index_csv: str | Path,
    audio_dir: str | Path,
    label_map: Mapping[str, str] | None = None,
    labels: Sequence[str] | None = None,
    keep_negatives: bool = True,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
) -> list[AudioRecord]:
    """Weak records from an AudioSet segments CSV.

    Rows are ``YTID, start_seconds, end_seconds, "mid1,mid2"``; ``#`` lines are comments. Labels are
    display names from ``label_index_csv``, renamed by ``label_map`` (names not in the map are
    dropped when a map is given) and filtered by ``labels``. Audio files are looked up in
    ``audio_dir`` (recursively) by stem: ``YTID``, ``YYTID``, ``YTID_<start ms>``,
    ``YTID_<start>``... and are assumed to contain just the segment. Rows without a file are
    skipped with one warning; rows with no remaining label are kept as negatives if ``keep_negatives``.
    """
    names = _read_label_index(label_index_csv)
    index = _index_audio(audio_dir, extensions)
    records, missing = [], 0
    with open(csv_path, newline="") as f:
        for row in csv.reader(f, skipinitialspace=True):
            if not row or row[0].lstrip().startswith("#") or len(row) < 4:
                continue
            ytid, start, end = row[0].strip(), float(row[1]), float(row[2])
            mids = [m.strip() for m in ",".join(row[3:]).strip().strip('"').split(",") if m.strip()]
            found: list[str] = []
            for mid in mids:
                name = names.get(mid, mid)
                lab = label_map.get(name) if label_map is not None else name
                if lab is not None and (labels is None or lab in labels) and lab not in found:
                    found.append(lab)
            if not found and not keep_negatives:
                continue
            path = _find_by_id(index, ytid, start)
            if path is None:
                missing += 1
                continue
            records.append(AudioRecord(path, end - start, tuple(found)))
    if missing:
        warnings.warn(f"{missing} AudioSet rows of {csv_path} have no audio file in {audio_dir}", stacklevel=2)
    return records


def _read_tsv_rows(path: str | Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and any(c.strip() for c in r)]
    if not rows:
        return [], []
    return [c.strip() for c in rows[0]], rows[1:]


def read_durations_tsv(path: str | Path) -> dict[str, float]:
    """DESED ``durations.tsv`` (``filename, duration``) -> {filename: seconds}."""
    _, rows = _read_tsv_rows(path)
    return {r[0]: float(r[1]) for r in rows if len(r) >= 2}


def read_desed_tsv(
    tsv_path: str | Path,
    audio_dir: str | Path,
    durations_tsv: str | Path | None = None,
    label_map: Mapping[str, str] | None = None,
    labels: Sequence[str] | None = None,
) -> list[AudioRecord]:
    """Records from a DESED/DCASE TSV: strong (``filename onset offset event_label``) or weak
    (``filename event_labels`` with comma-separated labels), detected from the header.

    Empty onset/label cells mark files without events. With ``durations_tsv`` every listed file is
    included (files absent from the label TSV become empty strong records); durations otherwise come
    from the audio headers. Labels are renamed by ``label_map`` and filtered by ``labels``.
    """
    header, rows = _read_tsv_rows(tsv_path)
    audio_dir = Path(audio_dir)

    def mapped(lab: str) -> str | None:
        lab = (label_map or {}).get(lab, lab)
        return lab if lab and (labels is None or lab in labels) else None

    strong = "onset" in header
    col = {name: i for i, name in enumerate(header)}
    files: dict[str, list] = {}
    for r in rows:
        fname = r[col.get("filename", 0)].strip()
        items = files.setdefault(fname, [])
        if strong:
            cells = [r[i].strip() if i < len(r) else "" for i in (col["onset"], col["offset"], col["event_label"])]
            if all(cells) and (lab := mapped(cells[2])):
                items.append(StrongEvent(lab, float(cells[0]), float(cells[1])))
        else:
            cell = r[col.get("event_labels", 1)] if len(r) > 1 else ""
            items += [lab for x in cell.split(",") if (lab := mapped(x.strip()))]
    durations = read_durations_tsv(durations_tsv) if durations_tsv else {}
    for fname in durations:
        files.setdefault(fname, [])
    records = []
    for fname, items in files.items():
        path = audio_dir / fname
        dur = durations.get(fname)
        if dur is None:
            dur = audio_duration(path) if path.exists() else None
        if strong:
            events = tuple(sorted(items, key=lambda e: (e.onset, e.label)))
            weak = tuple(dict.fromkeys(e.label for e in events))
            records.append(AudioRecord(path, dur, weak, events))
        else:
            records.append(AudioRecord(path, dur, tuple(dict.fromkeys(items))))
    return records


def read_scenes(split_dir: str | Path) -> list[AudioRecord]:
    """Strong records of a synthesised split (its ``manifest.json``; scenes without events included)."""
    split_dir = Path(split_dir)
    manifest = json.loads((split_dir / "manifest.json").read_text())
    audio_dir = split_dir / manifest.get("audio_dir", "audio")
    records = []
    for s in manifest["scenes"]:
        events = tuple(StrongEvent(lab, float(a), float(b)) for lab, a, b in s["events"])
        records.append(
            AudioRecord(
                audio_dir / s["filename"], float(s["duration"]), tuple(dict.fromkeys(e.label for e in events)), events
            )
        )
    return records


def frame_targets(
    events: Iterable[StrongEvent],
    labels: Sequence[str],
    start: float,
    window_seconds: float,
    steps: int,
    soft: bool = False,
) -> np.ndarray:
    """Frame targets ``[steps, C]`` for a window starting at ``start`` seconds.

    Step ``i`` covers ``[start + i*step, start + (i+1)*step)`` with ``step = window_seconds / steps``
    (the model contract). Hard targets: 1 where an event overlaps the step at all; ``soft``: the
    fraction of the step covered by events of the class.
    """
    index = {lab: i for i, lab in enumerate(labels)}
    step = window_seconds / steps
    edges = start + step * np.arange(steps + 1)
    out = np.zeros((steps, len(labels)), dtype=np.float32)
    for e in events:
        c = index.get(e.label)
        if c is None:
            continue
        cover = np.clip(np.minimum(edges[1:], e.offset) - np.maximum(edges[:-1], e.onset), 0.0, None) / step
        out[:, c] = np.maximum(out[:, c], cover if soft else (cover > 1e-9).astype(np.float32))
    return out


def clip_target(
    record: AudioRecord, labels: Sequence[str], start: float | None = None, window_seconds: float | None = None
) -> np.ndarray:
    """Clip targets ``[C]``: weak labels, or for strong records the classes active in the window."""
    out = np.zeros(len(labels), dtype=np.float32)
    index = {lab: i for i, lab in enumerate(labels)}
    if record.events is not None and start is not None and window_seconds is not None:
        names = [e.label for e in record.events if e.offset > start and e.onset < start + window_seconds]
    else:
        names = list(record.labels)
    for lab in names:
        if lab in index:
            out[index[lab]] = 1.0
    return out


def load_window(
    record: AudioRecord,
    labels: Sequence[str],
    window_seconds: float,
    sample_rate: int,
    steps: int,
    start: float | None = None,
    rng: np.random.Generator | None = None,
    soft: bool = False,
) -> Window:
    """Load a fixed-length window of ``record`` with its targets.

    ``start`` (seconds) defaults to a uniform random start inside the file when ``rng`` is given
    (0 otherwise). Audio is mono float32 at ``sample_rate``, zero-padded to exactly
    ``round(window_seconds * sample_rate)`` samples. Weak records get clip targets from their labels
    and all-zero frame targets with ``strong=False`` (mask the frame loss).
    """
    n = round(window_seconds * sample_rate)
    duration = record.duration if record.duration is not None else audio_duration(record.path)
    if start is None:
        slack = max(0.0, duration - window_seconds)
        start = float(rng.uniform(0.0, slack)) if rng is not None and slack > 0 else 0.0
    x = load_audio(record.path, sample_rate, start, window_seconds)[:n]
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    if record.events is not None:
        frames = frame_targets(record.events, labels, start, window_seconds, steps, soft)
        clip = clip_target(record, labels, start, window_seconds)
    else:
        frames = np.zeros((steps, len(labels)), dtype=np.float32)
        clip = clip_target(record, labels)
    return Window(x, clip, frames, record.events is not None, float(start))
