"""Strong-label scene synthesis: foreground events mixed onto backgrounds, DCASE TSV output.

A scene is ``duration`` seconds of background texture(s) (procedural, or recordings from background
folders) with foreground events (procedural generators and/or clips from ``ROOT/LABEL/*.wav`` folders) at
random onsets, each at a drawn SNR relative to the background over the event's active samples, with
optional EQ, device colouration and synthetic room reverb, plus unlabelled distractors; optionally the
whole mix is then captured through a device and/or clipped. Everything is drawn from one seeded
generator, so ``synthesize_scene(seed, config)`` is reproducible; scene ``i`` of a split with seed
``s`` uses the seed ``[s, i]`` (independent of the number of workers).

Strong labels come from the dry sources' active segments (so reverb tails are not labelled),
clipped to the scene and merged per class across gaps of at most ``merge_gap`` seconds.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..datasets import AUDIO_EXTENSIONS, StrongEvent, load_audio, scan_clip_folders
from . import speech
from .backgrounds import BACKGROUNDS
from .core import (
    DEFAULT_SAMPLE_RATE,
    Range,
    Sound,
    active_segments,
    choose,
    merge_segments,
    normalize,
    randint,
    uniform,
)
from .distractors import DISTRACTORS
from .effects import (
    DEVICES,
    apply_reverb,
    device_colouration,
    mask_from_segments,
    power,
    random_eq,
    snr_gain,
    synthetic_rir,
)
from .registry import ALERTS_LABELS, EVENT_GENERATORS, HELDOUT_PARAMS

MANIFEST_FORMAT = "streamdet-scenes/1"
TSV_HEADER = "filename\tonset\toffset\tevent_label"


# A scene's strong label is the training data's one interval type (label, onset, offset in seconds).
SceneEvent = StrongEvent


@dataclass
class SceneConfig:
    """Parameter ranges of a scene. Ranges are ``(lo, hi)``; integer counts are inclusive."""

    duration: float = 10.0
    sample_rate: int = DEFAULT_SAMPLE_RATE
    labels: tuple[str, ...] = ALERTS_LABELS
    events: tuple[int, int] = (0, 4)
    snr_db: Range = (-5.0, 20.0)
    max_polyphony: int = 2
    truncate_prob: float = 0.15
    distractors: tuple[int, int] = (0, 2)
    distractor_snr_db: Range = (-5.0, 15.0)
    backgrounds: tuple[int, int] = (1, 2)
    background_kinds: tuple[str, ...] = tuple(BACKGROUNDS)
    background_dbfs: Range = (-45.0, -25.0)
    reverb_prob: float = 0.6
    rt60: Range = (0.15, 1.0)
    drr_db: Range = (0.0, 12.0)
    eq_prob: float = 0.6
    eq_gain_db: Range = (-6.0, 6.0)
    device_prob: float = 0.15
    peak_dbfs: Range = (-20.0, -1.0)
    merge_gap: float = 1.0
    min_label_duration: float = 0.05
    generator_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    procedural: bool = True  # procedural foreground events and distractors (backgrounds stay procedural)
    clip_folders: tuple[str, ...] = ()
    clip_prob: float = 0.5
    clip_prob_by_label: dict[str, float] = field(default_factory=dict)  # overrides clip_prob per label
    background_folders: tuple[str, ...] = ()
    background_folder_prob: float = 0.5  # share of background layers drawn from background_folders
    capture_prob: float = 0.0  # the whole mix heard through a device (phone, laptop, TV, through a wall)
    clipping_prob: float = 0.0  # the whole mix driven past full scale and clipped ...
    clipping_db: Range = (1.0, 12.0)  # ... by this many dB
    speech_cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SceneConfig:
        """Inverse of :meth:`to_dict` (unknown keys are rejected)."""
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = d[f.name]
                kw[f.name] = tuple(v) if isinstance(v, list) else v
        unknown = set(d) - set(kw)
        if unknown:
            raise ValueError(f"unknown SceneConfig fields: {sorted(unknown)}")
        return cls(**kw)

    @classmethod
    def heldout(cls, **overrides: Any) -> SceneConfig:
        """A test-set configuration whose generator and room ranges reach beyond the training defaults."""
        base: dict[str, Any] = {
            "generator_params": {k: dict(v) for k, v in HELDOUT_PARAMS.items()},
            "rt60": (0.1, 1.5),
            "drr_db": (-3.0, 12.0),
            "eq_gain_db": (-10.0, 10.0),
            "device_prob": 0.25,
        }
        base.update(overrides)
        return cls(**base)


@dataclass
class Scene:
    """A synthesised scene: ``audio`` (float32 mono), merged strong ``events`` and the drawn ``info``.

    ``stems`` (only with ``keep_stems=True``): ``background`` array, ``foreground`` list of
    ``(label, array, segments)`` and ``distractors`` list of arrays, scaled exactly as mixed.
    """

    audio: np.ndarray
    sample_rate: int
    events: list[SceneEvent]
    info: dict[str, Any]
    stems: dict[str, Any] | None = None


class ClipLibrary:
    """Labelled clips from ``ROOT/LABEL/*.wav`` folders, served as :class:`Sound` objects.

    Labels come from folder names. Clips of labels outside the scene's classes serve as distractors.
    """

    def __init__(
        self,
        roots: Sequence[str | Path],
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
        cache_size: int = 256,
    ):
        self.sample_rate = sample_rate
        self.files: dict[str, list[Path]] = {}
        for root in roots:
            for label, paths in scan_clip_folders(root, extensions).items():
                self.files.setdefault(label, []).extend(paths)
        self._cache: dict[Path, Sound] = {}
        self._cache_size = cache_size

    @property
    def labels(self) -> list[str]:
        """Labels (folder names) that have at least one clip."""
        return sorted(k for k, v in self.files.items() if v)

    def load(self, path: Path) -> Sound:
        """Load one clip as a mono, peak-normalised :class:`Sound` with its active segments."""
        if path not in self._cache:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            x = load_audio(path, self.sample_rate)
            self._cache[path] = Sound(
                normalize(x), active_segments(x, self.sample_rate, -35.0, 0.3), {"source": "clip", "path": str(path)}
            )
        return self._cache[path]

    def sample(self, label: str, rng: np.random.Generator) -> Sound:
        """A random clip of ``label``."""
        return self.load(choose(rng, self.files[label]))


_warned_speech = False


def _procedural_labels(config: SceneConfig) -> list[str]:
    global _warned_speech
    if not config.procedural:
        return []
    labels = [lab for lab in config.labels if lab in EVENT_GENERATORS]
    if "speech" in labels and not speech.available():
        if not _warned_speech:
            warnings.warn(
                "espeak-ng not found: procedural speech is disabled (install espeak-ng or provide "
                "speech clips in a labelled-clip folder)",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned_speech = True
        labels.remove("speech")
    return labels


def _background(
    rng: np.random.Generator, config: SceneConfig, n: int, folder_files: list[Path]
) -> tuple[np.ndarray, list]:
    sr = config.sample_rate
    bg = np.zeros(n)
    used = []
    for _ in range(max(1, randint(rng, config.backgrounds))):
        if folder_files and rng.random() < config.background_folder_prob:
            path = choose(rng, folder_files)
            x = load_audio(path, sr)
            if len(x) < n:
                x = np.tile(x, int(np.ceil(n / max(len(x), 1))))
            start = int(rng.integers(0, len(x) - n + 1))
            x = x[start : start + n].astype(np.float64)
            used.append(str(path))
        else:
            kind = choose(rng, config.background_kinds)
            x = BACKGROUNDS[kind](rng, sr, config.duration)[:n].astype(np.float64)
            used.append(kind)
        bg += x / (np.sqrt(power(x)) + 1e-12) * 10 ** (uniform(rng, (-10.0, 0.0)) / 20)
    bg *= 10 ** (uniform(rng, config.background_dbfs) / 20) / (np.sqrt(power(bg)) + 1e-12)
    return bg, used


def _colour(rng: np.random.Generator, config: SceneConfig, snd: Sound) -> tuple[np.ndarray, dict]:
    """Apply the per-source effects (EQ, device, reverb) to a dry sound."""
    sr = config.sample_rate
    x = snd.audio.astype(np.float64)
    fx: dict[str, Any] = {}
    if rng.random() < config.eq_prob:
        x = random_eq(rng, x, sr, config.eq_gain_db)
        fx["eq"] = True
    if rng.random() < config.device_prob:
        kind = choose(rng, ("phone_speaker", "laptop", "tv", "muffled"))
        x = device_colouration(rng, x, sr, kind)
        fx["device"] = kind
    if rng.random() < config.reverb_prob:
        rir = synthetic_rir(rng, sr, config.rt60, config.drr_db)
        x = apply_reverb(x, rir)
        fx["rt60"] = round(len(rir) / sr, 3)
    return x, fx


def _place(
    rng: np.random.Generator, config: SceneConfig, snd: Sound, busy: list[tuple[float, float]] | None
) -> float | None:
    """Draw an onset (seconds, may be negative when truncated) honouring the polyphony limit."""
    dur = config.duration
    d = len(snd.audio) / config.sample_rate
    for _ in range(20):
        if rng.random() < config.truncate_prob:
            t0 = uniform(rng, (-0.5 * d, dur - 0.3))
        elif d <= dur:
            t0 = uniform(rng, (0.0, dur - d))
        else:
            t0 = uniform(rng, (dur - d, 0.0))
        if busy is None:
            return t0
        a, b = max(0.0, t0 + snd.onset), min(dur, t0 + snd.offset)
        # polyphony at the densest point of [a, b]: check at every start point inside it
        points = [a] + [s for s, _ in busy if a <= s < b]
        if all(sum(1 for s, e in busy if s <= p < e) < config.max_polyphony for p in points):
            return t0
    return None


def _params(config: SceneConfig, label: str) -> dict[str, Any]:
    """Generator keyword arguments of ``label`` (the speech disk cache comes from the config)."""
    params = dict(config.generator_params.get(label, {}))
    if label == "speech" and config.speech_cache_dir:
        params.setdefault("cache_dir", config.speech_cache_dir)
    return params


def _add(n: int, sr: int, x: np.ndarray, t0: float) -> np.ndarray:
    out = np.zeros(n)
    i0 = round(t0 * sr)
    src0 = max(0, -i0)
    dst0 = max(0, i0)
    m = min(len(x) - src0, n - dst0)
    if m > 0:
        out[dst0 : dst0 + m] = x[src0 : src0 + m]
    return out


def _clip_segments(segs: Iterable[tuple[float, float]], t0: float, dur: float, min_len: float) -> list:
    out = []
    for a, b in segs:
        a, b = max(0.0, a + t0), min(dur, b + t0)
        if b - a >= min_len:
            out.append((a, b))
    return out


def synthesize_scene(
    seed: int | Sequence[int] | np.random.Generator,
    config: SceneConfig | None = None,
    clips: ClipLibrary | None = None,
    keep_stems: bool = False,
) -> Scene:
    """Synthesise one scene. ``clips`` defaults to a library over ``config.clip_folders`` (if any)."""
    config = config or SceneConfig()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sr, dur = config.sample_rate, config.duration
    n = round(dur * sr)
    if clips is None and config.clip_folders:
        clips = ClipLibrary(config.clip_folders, sr)
    clip_labels = set(clips.labels) if clips else set()
    procedural = _procedural_labels(config)
    fg_labels = sorted(set(procedural) | (clip_labels & set(config.labels)), key=list(config.labels).index)
    bg_files = [
        p
        for root in config.background_folders
        for p in sorted(Path(root).rglob("*"))
        if p.suffix.lower() in AUDIO_EXTENSIONS
    ]

    bg, bg_used = _background(rng, config, n, bg_files)
    mix = bg.copy()
    busy: list[tuple[float, float]] = []
    per_class: dict[str, list[tuple[float, float]]] = {}
    fg_info, fg_stems, dis_info, dis_stems = [], [], [], []

    for _ in range(randint(rng, config.events) if fg_labels else 0):
        label = choose(rng, fg_labels)
        p_clip = config.clip_prob_by_label.get(label, config.clip_prob)
        use_clip = label in clip_labels and (label not in procedural or rng.random() < p_clip)
        snd = clips.sample(label, rng) if use_clip else EVENT_GENERATORS[label](rng, sr, **_params(config, label))
        if not snd.segments:
            continue
        t0 = _place(rng, config, snd, busy)
        if t0 is None:
            continue
        segs = _clip_segments(snd.segments, t0, dur, config.min_label_duration)
        if not segs:
            continue
        wet, fx = _colour(rng, config, snd)
        placed = _add(n, sr, wet, t0)
        mask = mask_from_segments(n, sr, segs)
        snr = uniform(rng, config.snr_db)
        placed *= snr_gain(power(placed[mask]), power(bg[mask]), snr)
        mix += placed
        busy.append((segs[0][0], segs[-1][1]))
        per_class.setdefault(label, []).extend(segs)
        fg_info.append(
            {
                "label": label,
                "onset": round(t0, 4),
                "snr_db": round(snr, 2),
                "source": "clip" if use_clip else "procedural",
                **snd.info,
                **fx,
            }
        )
        if keep_stems:
            fg_stems.append((label, placed, segs))

    dis_sources = [("proc", k) for k in DISTRACTORS] if config.procedural else []
    dis_sources += [("clip", k) for k in sorted(clip_labels - set(config.labels))]
    for _ in range(randint(rng, config.distractors) if dis_sources else 0):
        kind, name = choose(rng, dis_sources)
        snd = clips.sample(name, rng) if kind == "clip" else DISTRACTORS[name](rng, sr)
        if not snd.segments:
            continue
        t0 = _place(rng, config, snd, None)
        segs = _clip_segments(snd.segments, t0, dur, config.min_label_duration)
        if not segs:
            continue
        wet, fx = _colour(rng, config, snd)
        placed = _add(n, sr, wet, t0)
        mask = mask_from_segments(n, sr, segs)
        snr = uniform(rng, config.distractor_snr_db)
        placed *= snr_gain(power(placed[mask]), power(bg[mask]), snr)
        mix += placed
        dis_info.append({"name": name, "onset": round(t0, 4), "snr_db": round(snr, 2)})
        if keep_stems:
            dis_stems.append(placed)

    capture: dict[str, Any] = {}
    if config.capture_prob > 0 and rng.random() < config.capture_prob:
        capture["device"] = choose(rng, DEVICES)
        mix = device_colouration(rng, mix, sr, capture["device"])[:n]
    peak = float(np.max(np.abs(mix))) + 1e-12
    gain = 10 ** (uniform(rng, config.peak_dbfs) / 20) / peak
    if config.clipping_prob > 0 and rng.random() < config.clipping_prob:
        drive_db = uniform(rng, config.clipping_db)
        gain = 10 ** (drive_db / 20) / peak  # the peak lands drive_db past full scale
        capture["clipped_db"] = round(drive_db, 2)
    events = [
        SceneEvent(label, round(a, 4), round(b, 4))
        for label, segs in per_class.items()
        for a, b in merge_segments(segs, config.merge_gap)
    ]
    events.sort(key=lambda e: (e.onset, e.label))
    info = {
        "backgrounds": bg_used,
        "foreground": fg_info,
        "distractors": dis_info,
        "gain_db": round(20 * np.log10(gain), 2),
        **({"capture": capture} if capture else {}),
    }
    stems = None
    if keep_stems:
        stems = {
            "background": bg * gain,
            "foreground": [(lab, x * gain, s) for lab, x, s in fg_stems],
            "distractors": [x * gain for x in dis_stems],
        }
    out = np.clip(mix * gain, -1.0, 1.0) if "clipped_db" in capture else mix * gain
    return Scene(out.astype(np.float32), sr, events, info, stems)


def write_tsv(path: str | Path, events: Mapping[str, Sequence[SceneEvent]]) -> None:
    """Write DCASE strong labels (``filename, onset, offset, event_label`` with a header)."""
    lines = [TSV_HEADER]
    for fname, evs in events.items():
        lines += [f"{fname}\t{e.onset:.3f}\t{e.offset:.3f}\t{e.label}" for e in evs]
    Path(path).write_text("\n".join(lines) + "\n")


_worker_state: dict[str, Any] = {}


def _init_worker(config_dict: dict, audio_dir: str, fmt: str) -> None:
    config = SceneConfig.from_dict(config_dict)
    _worker_state.update(
        config=config,
        audio_dir=Path(audio_dir),
        fmt=fmt,
        clips=ClipLibrary(config.clip_folders, config.sample_rate) if config.clip_folders else None,
    )


def _render(job: tuple[int, int, str]) -> dict[str, Any]:
    seed, i, name = job
    st = _worker_state
    scene = synthesize_scene([seed, i], st["config"], st["clips"])
    subtype = "PCM_16"
    sf.write(st["audio_dir"] / name, scene.audio, scene.sample_rate, subtype=subtype, format=st["fmt"].upper())
    return {
        "filename": name,
        "seed": [seed, i],
        "duration": len(scene.audio) / scene.sample_rate,
        "events": [[e.label, e.onset, e.offset] for e in scene.events],
        **scene.info,
    }


def synthesize_split(
    out_dir: str | Path,
    n_scenes: int,
    seed: int = 0,
    config: SceneConfig | None = None,
    workers: int = 1,
    audio_format: str = "wav",
    prefix: str = "scene",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Synthesise ``n_scenes`` scenes into ``out_dir`` and return the manifest path.

    Layout: ``audio/{prefix}_{i:05d}.{wav|flac}`` (16-bit), ``labels.tsv`` (DCASE strong labels,
    file names relative to ``audio/``), ``durations.tsv`` and ``manifest.json`` (config, seed and
    per-scene details, including scenes without events). ``progress(done, total)`` is called after
    each scene. Output is identical for any number of ``workers``.
    """
    config = config or SceneConfig()
    out = Path(out_dir)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, f"{prefix}_{i:05d}.{audio_format}") for i in range(n_scenes)]
    init_args = (config.to_dict(), str(audio_dir), audio_format)
    records: list[dict[str, Any]] = []
    if workers <= 1:
        _init_worker(*init_args)
        iterator: Iterable[dict[str, Any]] = map(_render, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(workers, _init_worker, init_args)
        iterator = pool.imap(_render, jobs, chunksize=4)
    try:
        for rec in iterator:
            records.append(rec)
            if progress:
                progress(len(records), n_scenes)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    write_tsv(out / "labels.tsv", {r["filename"]: [SceneEvent(*e) for e in r["events"]] for r in records})
    (out / "durations.tsv").write_text(
        "filename\tduration\n" + "".join(f"{r['filename']}\t{r['duration']:.3f}\n" for r in records)
    )
    manifest = {
        "format": MANIFEST_FORMAT,
        "seed": seed,
        "n_scenes": n_scenes,
        "sample_rate": config.sample_rate,
        "duration": config.duration,
        "labels": list(config.labels),
        "audio_dir": "audio",
        "config": config.to_dict(),
        "scenes": records,
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path
