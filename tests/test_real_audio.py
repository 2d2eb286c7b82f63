"""The real-audio corpus: reading its manifests, the split by source, the synthesiser's layout, the benchmark's
measurements (on a generated corpus and the band model), and the split of the shared corpus itself."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streamdet.train.real import (
    CorpusError,
    attribution_markdown,
    link_split,
    read_corpus,
    split_by_source,
    split_summary,
)
from streamdet.train.real_eval import (
    _flagged_seconds,
    background_false_alarms,
    real_scene_config,
    scene_figures,
    steady_noise_false_alarms,
)

from streamdet import Event

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sounds"
SR = 16000
FIELDS_T = ["file", "class", "source", "source_path", "licence", "author", "duration_s", "synthetic", "notes"]
FIELDS_B = ["file", "kind", *FIELDS_T[2:]]


def _tone(freq: float, seconds: float, amp: float = 0.1) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_part(root: Path, part: str, rows: list[tuple[str, str, str, str, np.ndarray]]) -> None:
    """rows: (class or kind, file name, source, author, audio)."""
    (root / part).mkdir(parents=True, exist_ok=True)
    with open(root / part / "MANIFEST.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(FIELDS_T if part == "targets" else FIELDS_B)
        for kind, name, source, author, audio in rows:
            (root / part / kind).mkdir(exist_ok=True)
            sf.write(root / part / kind / name, audio, SR)
            w.writerow([f"{kind}/{name}", kind, source, f"/src/{name}", "CC0-1.0", author, len(audio) / SR, "no",
                        "a | note"])


@pytest.fixture(scope="module")
def toy_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Targets of the band model's classes (tones) from several sources; noise and tone backgrounds."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    targets = []
    for label, freq in (("low", 500.0), ("mid", 1200.0), ("high", 2800.0)):
        for s in range(3):
            for k in range(2):
                targets.append((label, f"{label}_{s}_{k}.flac", f"debian:pkg-{label}{s}=1.0", f"author {s}",
                                _tone(freq, 1.0 + 0.5 * k)))
    backgrounds = []
    for s in range(4):
        for kind in ("music", "street", "hard_negatives"):
            backgrounds.append((kind, f"{kind}_{s}.flac", f"github:owner/bg{s}@abc", "someone",
                                (0.01 * rng.standard_normal(SR * 3)).astype(np.float32)))
    backgrounds.append(("music", "loud_low.flac", "github:owner/bg0@abc", "someone", _tone(500.0, 4.0)))
    _write_part(root, "targets", targets)
    _write_part(root, "backgrounds", backgrounds)
    return root


def test_read_corpus_reads_both_manifests(toy_corpus: Path) -> None:
    clips = read_corpus(toy_corpus)
    assert len(clips) == 18 + 13
    low = next(c for c in clips if c.kind == "low")
    assert low.part == "targets" and low.origin == "debian:pkg-low0" and low.duration == pytest.approx(1.0)
    assert low.path.is_file() and low.group == "debian:pkg-low0"


def test_read_corpus_names_what_is_wrong(tmp_path: Path, toy_corpus: Path) -> None:
    with pytest.raises(CorpusError, match=r"no targets/MANIFEST\.csv"):
        read_corpus(tmp_path)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(toy_corpus, broken)
    (broken / "targets" / "low" / "low_0_0.flac").unlink()
    with pytest.raises(CorpusError, match=r"MANIFEST.csv, line 2: .*low_0_0.flac does not exist"):
        read_corpus(broken)


def test_split_keeps_every_source_on_one_side_and_covers_every_class(toy_corpus: Path) -> None:
    clips = read_corpus(toy_corpus)
    split = split_by_source(clips, seed=0)
    assert sorted(c.path for c in split["train"] + split["val"]) == sorted(c.path for c in clips)
    train_groups = {c.group for c in split["train"]}
    val_groups = {c.group for c in split["val"]}
    assert not train_groups & val_groups
    for label in ("low", "mid", "high"):  # three sources each: one validates, the others train
        assert any(c.kind == label for c in split["val"]) and any(c.kind == label for c in split["train"])
    assert split == split_by_source(clips, seed=0)  # deterministic
    summary = split_summary(split)
    assert summary["val"]["targets/low"]["groups"] >= 1
    assert sum(row["clips"] for side in summary.values() for row in side.values()) == len(clips)


def test_speech_is_split_by_speaker_other_classes_by_source() -> None:
    from streamdet.train.real import RealClip

    def clip(kind: str, author: str) -> RealClip:
        return RealClip(Path(f"/x/{kind}{author}.flac"), "targets", kind, "github:a/b@1", "", "", author, 1.0,
                        False, "")

    assert clip("speech", "ann").group != clip("speech", "bob").group
    assert clip("siren", "ann").group == clip("siren", "bob").group == "github:a/b"


def test_link_split_lays_out_targets_distractors_and_beds(toy_corpus: Path, tmp_path: Path) -> None:
    clips = read_corpus(toy_corpus)
    dirs = link_split(clips, tmp_path / "side", labels=["low", "mid"])
    assert sorted(p.name for p in dirs["clips"].iterdir()) == ["hard_negatives", "low", "mid", "music"]
    assert sorted(p.name for p in dirs["beds"].iterdir()) == ["music", "street"]
    link = dirs["clips"] / "low" / "low_0_0.flac"
    assert link.is_symlink() and link.resolve() == (toy_corpus / "targets" / "low" / "low_0_0.flac").resolve()
    link_split(clips[:2], tmp_path / "side", labels=["low"])  # laid out again: only what is asked for remains
    assert sorted(p.name for p in dirs["clips"].rglob("*.flac")) == ["low_0_0.flac", "low_0_1.flac"]


def test_attribution_lists_every_clip_with_its_licence(toy_corpus: Path) -> None:
    clips = read_corpus(toy_corpus)
    text = attribution_markdown(clips, {clips[0].group: "val"})
    assert text.count("\n") == len(clips) + 2
    assert "CC0-1.0" in text and "a \\| note" not in text and "| val |" in text


def test_real_scenes_hold_only_real_recordings(toy_corpus: Path, tmp_path: Path) -> None:
    from streamdet.train.synth import synthesize_scene

    dirs = link_split(read_corpus(toy_corpus), tmp_path / "side", labels=["low", "mid", "high"])
    cfg = real_scene_config(dirs["clips"], dirs["beds"], ["low", "mid", "high"], duration=6.0, events=(2, 2))
    for seed in range(3):
        scene = synthesize_scene(seed, cfg)
        assert scene.events and all(e.label in {"low", "mid", "high"} for e in scene.events)
        assert all(fg["source"] == "clip" for fg in scene.info["foreground"])
        assert all(str(dirs["beds"]) in b for b in scene.info["backgrounds"])


def test_capture_and_clipping_of_the_whole_mix() -> None:
    from streamdet.train.synth import SceneConfig, synthesize_scene

    base = {"duration": 3.0, "labels": ("knock",), "events": (1, 1), "distractors": (0, 0)}
    plain = synthesize_scene(5, SceneConfig(**base))
    assert "capture" not in plain.info and np.max(np.abs(plain.audio)) < 0.95
    clipped = synthesize_scene(5, SceneConfig(**base, clipping_prob=1.0, clipping_db=(6.0, 6.0)))
    assert clipped.info["capture"]["clipped_db"] == 6.0
    assert np.max(np.abs(clipped.audio)) == pytest.approx(1.0) and np.mean(np.abs(clipped.audio) >= 0.999) > 1e-3
    heard = synthesize_scene(5, SceneConfig(**base, capture_prob=1.0))
    assert heard.info["capture"]["device"] in {"phone_speaker", "laptop", "tv", "muffled"}
    assert heard.events == plain.events  # labels do not depend on how the mix was heard


def test_flagged_seconds_counts_overlaps_once() -> None:
    evs = [Event("a", 0.0, 2.0, 1.0), Event("b", 1.0, 3.0, 1.0), Event("a", 5.0, None, 1.0)]
    assert _flagged_seconds(evs, 6.0) == pytest.approx(4.0)


def test_background_false_alarms_per_kind(band_detector, toy_corpus: Path) -> None:
    """Quiet noise never fires the band model; a loud 500 Hz tone in a music clip fires 'low' once."""
    backgrounds = [c for c in read_corpus(toy_corpus) if c.part == "backgrounds"]
    fa = background_false_alarms(band_detector, backgrounds)
    music = fa["per_kind"]["music"]
    assert music["events"] == 1 and music["labels"] == {"low": 1}
    assert music["minutes"] == pytest.approx((4 * 3 + 4) / 60, abs=0.01)
    assert music["false_alarms_per_minute"] == pytest.approx(1 / music["minutes"], rel=0.02)
    assert 0.2 < music["flagged_share"] < 0.3  # 4 s of 16 s
    assert fa["per_kind"]["street"]["events"] == 0 and fa["overall"]["events"] == 1
    assert fa["most_events"] == ["music/loud_low.flac"]


def test_steady_noise_counts_events(band_detector) -> None:
    st = steady_noise_false_alarms(band_detector, seconds=3.0)
    assert st["per_signal"]["silence"] == 0
    assert st["per_signal"]["white -50 dBFS"] == 0
    assert st["per_signal"]["white -15 dBFS"] >= 1  # broadband energy at -15 dBFS fills every band
    assert st["events"] == sum(st["per_signal"].values())


def test_scene_figures_count_events_and_recordings(band_detector, toy_corpus: Path, tmp_path: Path) -> None:
    from streamdet.train.synth import synthesize_split

    labels = band_detector.labels
    dirs = link_split(read_corpus(toy_corpus), tmp_path / "side", labels=labels)
    cfg = real_scene_config(dirs["clips"], dirs["beds"], labels, duration=6.0, reverb_prob=0.0, eq_prob=0.0,
                            device_prob=0.0, distractors=(0, 0), snr_db=(20.0, 20.0))
    synthesize_split(tmp_path / "scenes", 6, seed=1, config=cfg)
    fig = scene_figures(band_detector, tmp_path / "scenes", labels)
    manifest = json.loads((tmp_path / "scenes" / "manifest.json").read_text())
    n = {c: sum(1 for s in manifest["scenes"] for e in s["events"] if e[0] == c) for c in labels}
    for c in labels:
        assert fig["per_class"][c]["events"] == n[c]
    assert set(fig["classes"]) == {c for c in labels if n[c]}
    assert fig["segment_f1_macro"] > 0.5  # clean tones over quiet noise: the band model finds them


@pytest.mark.skipif(not (SHARED_CORPUS / "targets" / "MANIFEST.csv").is_file(),
                    reason="the shared real-audio corpus is not beside the checkout")
def test_the_shared_corpus_split_by_source() -> None:
    """The recipe's split of the real corpus: no source (speech: speaker) on both sides; every alert class with
    two or more sources has validation audio and keeps a training source."""
    clips = read_corpus(SHARED_CORPUS)
    split = split_by_source(clips, seed=0)
    origins = {side: {c.origin for c in cs if c.kind != "speech"} for side, cs in split.items()}
    assert not origins["train"] & origins["val"]
    speakers = {side: {c.group for c in cs if c.kind == "speech"} for side, cs in split.items()}
    assert not speakers["train"] & speakers["val"] and speakers["val"]
    summary = split_summary(split)
    for label in ("alarm", "siren", "phone_ring", "speech"):
        assert summary["val"][f"targets/{label}"]["clips"] > 0
        assert summary["train"][f"targets/{label}"]["clips"] > 0
    assert summary["val"]["backgrounds/music"]["seconds"] > 300


def test_mined_weights_favour_files_with_false_alarms() -> None:
    from streamdet.train.mining import mined_weights

    base = np.array([0.4, 0.4, 0.2])
    fp = np.array([0.0, 0.9, 0.9])
    w, summary = mined_weights(base, fp, boost=3.0)
    assert w.sum() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(1 + 3 * 0.9) and w[2] / w[1] == pytest.approx(0.5)
    assert summary["files_fp_over_0.5"] == 2
    assert summary["before_share_of_files_fp_over_0.5"] == pytest.approx(0.6)
    assert summary["drawn_share_of_files_fp_over_0.5"] > 0.6


def test_speaker_key_joins_one_voice_across_years_and_addresses() -> None:
    from streamdet.train.real import speaker_key

    assert speaker_key("Zohra Coudoin 2001") == speaker_key("Zohra Coudoin 2015") == "zohra coudoin"
    assert speaker_key("Horia PELLE 2016") == speaker_key("horia pelle (2015)")
    assert speaker_key("Iassen Kertov <kertov at gmail dot com>") == "iassen kertov"
    assert speaker_key("Ann") != speaker_key("Bob")
