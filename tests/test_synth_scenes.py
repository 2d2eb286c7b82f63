"""Scene synthesis: determinism, SNR, strong labels, TSV/manifest output, clip folders (issue 8)."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import soundfile as sf
from streamdet.train.datasets import read_scenes
from streamdet.train.synth import (
    ClipLibrary,
    SceneConfig,
    SceneEvent,
    speech,
    synthesize_scene,
    synthesize_split,
    write_tsv,
)
from streamdet.train.synth import scenes as scenes_mod
from streamdet.train.synth.effects import (
    apply_reverb,
    mask_from_segments,
    measured_snr,
    random_eq,
    snr_gain,
    synthetic_rir,
)

SR = 32000
FAST = {"duration": 6.0}


def test_scene_deterministic_by_seed():
    cfg = SceneConfig(events=(2, 3), **FAST)
    a, b = synthesize_scene(7, cfg), synthesize_scene(7, cfg)
    assert np.array_equal(a.audio, b.audio) and a.events == b.events and a.info == b.info
    c = synthesize_scene(8, cfg)
    assert not np.array_equal(a.audio, c.audio)
    assert a.audio.dtype == np.float32 and len(a.audio) == 6 * SR


def test_requested_snr_is_achieved():
    cfg = SceneConfig(events=(2, 3), distractors=(0, 0), truncate_prob=0.0, **FAST)
    checked = 0
    for seed in range(6):
        scene = synthesize_scene(seed, cfg, keep_stems=True)
        bg = scene.stems["background"]
        for (label, stem, segs), info in zip(scene.stems["foreground"], scene.info["foreground"], strict=True):
            assert label == info["label"]
            mask = mask_from_segments(len(bg), SR, segs)
            assert measured_snr(stem, bg, mask) == pytest.approx(info["snr_db"], abs=0.5)
            assert -5.0 <= info["snr_db"] <= 20.0
            checked += 1
        mixed = bg + sum(s for _, s, _ in scene.stems["foreground"])
        np.testing.assert_allclose(scene.audio, mixed, atol=1e-5)
    assert checked >= 10


def test_labels_are_tight_valid_and_merged():
    cfg = SceneConfig(events=(3, 4), reverb_prob=0.0, distractors=(0, 0), **FAST)
    for seed in range(5):
        scene = synthesize_scene(seed, cfg, keep_stems=True)
        for e in scene.events:
            assert e.label in cfg.labels and 0.0 <= e.onset < e.offset <= 6.0
        for label in {e.label for e in scene.events}:
            evs = sorted((e for e in scene.events if e.label == label), key=lambda e: e.onset)
            assert all(evs[i + 1].onset - evs[i].offset > cfg.merge_gap for i in range(len(evs) - 1))
        # without reverb, (almost) all foreground energy lies inside the labelled spans of its class
        for label, stem, _ in scene.stems["foreground"]:
            spans = [(e.onset, e.offset) for e in scene.events if e.label == label]
            inside = mask_from_segments(len(stem), SR, spans)
            assert np.sum(stem[inside] ** 2) > 0.98 * np.sum(stem**2)


def test_overlap_respects_polyphony_limit():
    for limit in (1, 2):
        cfg = SceneConfig(events=(6, 6), max_polyphony=limit, distractors=(0, 0), truncate_prob=0.0, **FAST)
        scene = synthesize_scene(3, cfg, keep_stems=True)
        extents = [(segs[0][0], segs[-1][1]) for _, _, segs in scene.stems["foreground"]]
        assert len(extents) >= 2
        for a, _ in extents:  # polyphony at every event start
            assert sum(1 for s, e in extents if s <= a < e) <= limit


def test_config_roundtrip_and_heldout_ranges():
    cfg = SceneConfig.heldout(duration=5.0)
    back = SceneConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.duration == 5.0 and back.rt60 == cfg.rt60 and back.generator_params["alarm"]["freq_range"]
    assert cfg.rt60[1] > SceneConfig().rt60[1]
    scene = synthesize_scene(1, SceneConfig.heldout(events=(2, 2), **FAST))
    assert scene.events
    with pytest.raises(ValueError, match="unknown"):
        SceneConfig.from_dict({"nope": 1})


def test_split_writes_audio_tsv_manifest(tmp_path):
    cfg = SceneConfig(events=(1, 3), duration=4.0)
    manifest = synthesize_split(tmp_path / "train", 4, seed=5, config=cfg)
    data = json.loads(manifest.read_text())
    assert data["n_scenes"] == 4 and data["seed"] == 5 and len(data["scenes"]) == 4
    with open(tmp_path / "train" / "labels.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["filename", "onset", "offset", "event_label"]
    expected = [[s["filename"], f"{a:.3f}", f"{b:.3f}", lab] for s in data["scenes"] for lab, a, b in s["events"]]
    assert rows[1:] == expected
    for i, s in enumerate(data["scenes"]):
        audio, sr = sf.read(tmp_path / "train" / "audio" / s["filename"], dtype="float32")
        assert sr == SR and len(audio) == 4 * SR
        direct = synthesize_scene([5, i], cfg)  # scene i of the split is reproducible on its own
        np.testing.assert_allclose(audio, direct.audio, atol=1.0 / 16384)
        assert [[e.label, e.onset, e.offset] for e in direct.events] == s["events"]
    records = read_scenes(tmp_path / "train")
    assert [r.path.name for r in records] == [s["filename"] for s in data["scenes"]]
    assert all(r.strong and r.duration == 4.0 for r in records)


@pytest.mark.slow
def test_split_is_identical_with_workers(tmp_path):
    cfg = SceneConfig(events=(1, 2), duration=3.0)
    m1 = json.loads(synthesize_split(tmp_path / "a", 6, seed=2, config=cfg).read_text())
    m2 = json.loads(synthesize_split(tmp_path / "b", 6, seed=2, config=cfg, workers=2).read_text())
    assert m1["scenes"] == m2["scenes"]
    assert (tmp_path / "a" / "labels.tsv").read_text() == (tmp_path / "b" / "labels.tsv").read_text()
    for s in m1["scenes"]:
        assert (tmp_path / "a/audio" / s["filename"]).read_bytes() == (
            tmp_path / "b/audio" / s["filename"]
        ).read_bytes()


def test_write_tsv_format(tmp_path):
    write_tsv(tmp_path / "x.tsv", {"a.wav": [SceneEvent("knock", 1.0, 1.25)], "b.wav": []})
    assert (tmp_path / "x.tsv").read_text() == "filename\tonset\toffset\tevent_label\na.wav\t1.000\t1.250\tknock\n"


def _tone_clip(path, freq, dur=1.0, sr=16000):
    t = np.arange(int(dur * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    x[: int(0.2 * sr)] = 0.0  # leading silence: labels must start at the sound, not the file
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr)


def test_labelled_clip_folder_source(tmp_path):
    root = tmp_path / "clips"
    _tone_clip(root / "knock" / "k1.wav", 700.0)
    _tone_clip(root / "knock" / "k2.wav", 700.0)
    _tone_clip(root / "vacuum" / "v.wav", 5000.0)  # not a class: used as a distractor
    lib = ClipLibrary([root], SR)
    assert lib.labels == ["knock", "vacuum"]
    snd = lib.sample("knock", np.random.default_rng(0))
    assert snd.onset == pytest.approx(0.2, abs=0.02) and snd.offset == pytest.approx(1.0, abs=0.02)
    cfg = SceneConfig(
        procedural=False,
        clip_folders=(str(root),),
        events=(1, 1),
        distractors=(1, 1),
        truncate_prob=0.0,
        reverb_prob=0.0,
        eq_prob=0.0,
        device_prob=0.0,
        **FAST,
    )
    scene = synthesize_scene(0, cfg, keep_stems=True)
    assert [e.label for e in scene.events] == ["knock"]
    assert scene.info["foreground"][0]["source"] == "clip"
    assert scene.info["distractors"][0]["name"] == "vacuum"
    e = scene.events[0]
    assert e.offset - e.onset == pytest.approx(0.8, abs=0.03)
    stem = scene.stems["foreground"][0][1]
    f = np.fft.rfftfreq(len(stem), 1 / SR)
    assert f[np.argmax(np.abs(np.fft.rfft(stem)))] == pytest.approx(700.0, abs=2.0)


def test_speech_disabled_with_warning_when_espeak_missing(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    monkeypatch.setattr(scenes_mod, "_warned_speech", False)
    cfg = SceneConfig(labels=("speech", "knock"), events=(3, 3), **FAST)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        scene = synthesize_scene(0, cfg)
    assert any("espeak-ng" in str(x.message) for x in w)
    assert all(e.label == "knock" for e in scene.events) and scene.events


def test_effects_rir_eq_and_snr_gain():
    rng = np.random.default_rng(0)
    rir = synthetic_rir(rng, SR, rt60_range=(0.5, 0.5), drr_db_range=(6.0, 6.0))
    assert rir[0] == pytest.approx(1.0, abs=0.5) and len(rir) == SR // 2
    tail = rir[1:]
    assert 10 * np.log10(1.0 / np.sum(tail**2)) == pytest.approx(6.0, abs=1.5)
    energy = np.cumsum(tail[::-1] ** 2)[::-1]  # Schroeder decay
    edc = 10 * np.log10(energy / energy[0])
    t30 = np.argmax(edc < -30) / SR
    assert 0.15 < t30 < 0.45  # ~RT60/2 for a 0.5 s room
    x = rng.standard_normal(SR)
    assert len(apply_reverb(x, rir)) == SR + len(rir) - 1
    y = random_eq(rng, x, SR, (-6.0, 6.0))
    assert np.isfinite(y).all() and not np.allclose(x, y)
    s, n = rng.standard_normal(1000), 0.1 * rng.standard_normal(1000)
    g = snr_gain(np.mean(s**2), np.mean(n**2), 3.0)
    assert 10 * np.log10(np.mean((g * s) ** 2) / np.mean(n**2)) == pytest.approx(3.0, abs=1e-6)
