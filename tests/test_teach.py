"""Teaching a model new sounds (``streamdet train --from MODEL --clips DIR --out NEW.onnx``) and the ONNX importer
it starts from: the whole path on a tiny HTS-AT and a generated clip folder, and every bad-input error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from streamdet.export import to_onnx
from streamdet.models import HTSAT, HTSATConfig
from streamdet.models.onnx_import import load_onnx_model
from streamdet.train.teach import MIN_CLIPS, onnx_metadata
from typer.testing import CliRunner

from streamdet.cli import app
from streamdet.session import BUNDLED_MODEL

SR = 16000
OLD_LABELS = ["hum", "click"]
TINY = {"sample_rate": SR, "clip_samples": SR, "n_fft": 256, "hop_length": 128, "n_mels": 32, "fmin": 50.0,
        "fmax": 8000.0, "spec_size": 64, "patch_size": 4, "patch_stride": (4, 4), "embed_dim": 16, "depths": (1, 1),
        "num_heads": (2, 2), "window_size": 4, "drop_path_rate": 0.0}


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HTSAT]:
    """A tiny HTS-AT (1 s windows, two classes) exported with thresholds and post-processing."""
    torch.manual_seed(0)
    model = HTSAT(HTSATConfig(num_classes=2, **TINY), labels=OLD_LABELS).eval()
    with torch.no_grad():  # make the BatchNorm statistics non-trivial, so the importer must carry them
        model.bn0.running_mean.uniform_(-30, -10)
        model.bn0.running_var.uniform_(50, 150)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    to_onnx(model, path, window_seconds=1.0, thresholds={"hum": (0.7, 0.4), "click": (0.6, 0.3)},
            postprocess={"hum": {"min_duration": 0.25, "min_gap": 0.5}})
    return path, model


def _chirp(seconds: float, f0: float, f1: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    return (x * np.hanning(len(t)) + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


def _clips(root: Path, n: int = 6, label: str = "chirp") -> Path:
    """``root/label/*.wav`` (rising chirps of varied pitch and length) and ``root/background/`` (noise)."""
    (root / label).mkdir(parents=True)
    for i in range(n):
        sf.write(root / label / f"{label}_{i}.wav", _chirp(0.6 + 0.15 * i, 800 + 100 * i, 2500 + 150 * i, i), SR)
    (root / "background").mkdir()
    rng = np.random.default_rng(9)
    for i in range(2):
        sf.write(root / "background" / f"room_{i}.flac", (0.01 * rng.standard_normal(5 * SR)).astype(np.float32), SR)
    return root


def _teach(*args: object):
    return CliRunner().invoke(app, ["train", *map(str, args), "--threads", "1", "--workers", "1"])


def test_the_importer_rebuilds_the_exported_model_exactly(tiny_onnx) -> None:
    path, original = tiny_onnx
    rebuilt = load_onnx_model(path)
    want = original.state_dict()
    for key, value in rebuilt.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, want[key]), key
    assert rebuilt.labels == OLD_LABELS
    assert rebuilt.source["parity_max_abs_diff"] <= 1e-4


def test_the_importer_reads_the_bundled_model_with_parity() -> None:
    model = load_onnx_model(BUNDLED_MODEL)
    assert model.labels[:2] == ["alarm", "siren"]
    assert model.source["parity_max_abs_diff"] <= 1e-4  # torch against ONNX Runtime on noise, a tone, silence


@pytest.mark.slow
def test_train_from_clips_adds_a_label_and_keeps_the_old_ones(tiny_onnx, tmp_path: Path) -> None:
    source, _ = tiny_onnx
    clips = _clips(tmp_path / "clips")
    out = tmp_path / "new.onnx"
    result = _teach("--from", source, "--clips", clips, "--out", out, "--scenes", "24")
    assert result.exit_code == 0, result.output
    meta = onnx_metadata(out)
    assert list(meta.labels) == [*OLD_LABELS, "chirp"]
    old = onnx_metadata(source)
    assert meta.thresholds["hum"] == old.thresholds["hum"] and meta.thresholds["click"] == old.thresholds["click"]
    assert meta.postprocess["hum"] == old.postprocess["hum"]
    assert "chirp" in meta.thresholds and "chirp" in meta.postprocess  # tuned on the validation recordings
    taught = meta.provenance["taught"]
    assert taught["new_labels"] == ["chirp"] and taught["from"] == "tiny.onnx"
    split = taught["recordings"]["chirp"]
    assert not set(split["train"]) & set(split["val"]) and len(split["train"]) + len(split["val"]) == 6
    # the report on stdout: every class, new and old, before and after
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["chirp", "new"] for line in lines), result.stdout
    assert any(line.split()[:2] == ["hum", "old"] for line in lines), result.stdout
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["old_scores_max_abs_diff"] <= 1e-4
    assert report["classes"]["chirp"]["after"]["event_f1"] is not None
    # the runtime loads it, and the old classes score exactly as the source model does
    import streamdet

    audio = np.concatenate([np.zeros(SR, np.float32), _chirp(0.9, 900, 2600, 99), np.zeros(SR, np.float32)])
    sf.write(tmp_path / "probe.wav", audio, SR)
    new_track = streamdet.Detector(out, device="cpu").score_track(tmp_path / "probe.wav")
    old_track = streamdet.Detector(source, device="cpu").score_track(tmp_path / "probe.wav")
    assert np.max(np.abs(new_track.scores[:, :2] - old_track.scores)) <= 1e-4
    assert new_track.scores.shape[1] == 3


@pytest.mark.parametrize("case", ["too_few", "unreadable", "exists", "silent", "too_short"])
def test_bad_clip_folders_are_refused_with_the_file_and_the_reason(tiny_onnx, tmp_path: Path, case: str) -> None:
    source, _ = tiny_onnx
    clips = _clips(tmp_path / "clips", n=MIN_CLIPS)
    folder = clips / "chirp"
    if case == "too_few":
        (folder / "chirp_0.wav").unlink()
        expect = [str(folder), f"at least {MIN_CLIPS}"]
    elif case == "unreadable":
        (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
        expect = [str(folder / "broken.wav"), "unreadable"]
    elif case == "exists":
        folder.rename(clips / "hum")
        expect = [str(clips / "hum"), "already has the label 'hum'", "--replace"]
    elif case == "silent":
        sf.write(folder / "quiet.wav", np.zeros(SR, np.float32), SR)
        expect = [str(folder / "quiet.wav"), "silent"]
    else:
        sf.write(folder / "blip.wav", _chirp(0.04, 1000, 1200, 5), SR)
        expect = [str(folder / "blip.wav"), "too short"]
    result = _teach("--from", source, "--clips", clips, "--out", tmp_path / "new.onnx")
    assert result.exit_code == 2, result.output
    for text in expect:
        assert text in result.stderr, result.stderr
    assert not (tmp_path / "new.onnx").exists()


def test_replace_trains_an_existing_label_anew(tiny_onnx, tmp_path: Path) -> None:
    """With --replace the check passes for a label the model has (the run itself is the slow test's path)."""
    from streamdet.train.teach import read_teach_folder

    clips = _clips(tmp_path / "clips", label="hum")
    folder = read_teach_folder(clips, SR, OLD_LABELS, replace=True)
    assert folder.labels == ["hum"] and len(folder.backgrounds) == 2


def test_usage_errors(tiny_onnx, tmp_path: Path) -> None:
    source, _ = tiny_onnx
    clips = _clips(tmp_path / "clips")
    r = _teach("--from", source, "--clips", clips)
    assert r.exit_code == 2 and "--out" in r.stderr
    r = _teach("--from", source, "--clips", clips, "--out", tmp_path / "model_dir")
    assert r.exit_code == 2 and "ending in .onnx" in r.stderr
    r = _teach("--from", tmp_path / "nope.onnx", "--clips", clips, "--out", tmp_path / "x.onnx")
    assert r.exit_code == 2 and "no such model" in r.stderr


FIXTURES = Path(__file__).parent / "fixtures"


def test_sources_an_official_htsat_checkpoint_and_refuses_an_ast() -> None:
    from streamdet.train.teach import TeachError, grow_head, load_source

    model, info = load_source(FIXTURES / "htsat" / "tiny_state_dict.pt")
    assert model.model_type == "htsat" and info["thresholds"] is None
    assert info["window_seconds"] == model.native_window_samples / model.sample_rate
    n_old = len(model.labels)
    assert grow_head(model, ["chirp"]) == n_old and model.labels[-1] == "chirp"
    wave = torch.zeros(1, model.native_window_samples)
    assert model(wave).framewise.shape[-1] == n_old + 1
    with pytest.raises(TeachError, match="needs an HTS-AT"):
        load_source(FIXTURES / "ast" / "official_tiny" / "ast_tiny224_depth1_f10_t10_tdim1024_label5.pth")


def test_the_place_recordings_become_distractors_and_never_labels(tmp_path: Path) -> None:
    """Excerpts of ``background/`` recordings are drawn as distractors in the new label's scenes and in the rehearsal
    scenes (which hold no new sound), at most 3 s long, and never appear as labelled events."""
    from streamdet.train.synth import SceneConfig, synthesize_scene
    from streamdet.train.teach import _PlaceExcerpts, _SegmentClips

    rate = 16000
    place = []
    for i in range(5):
        path = tmp_path / f"bg{i}.wav"
        sf.write(path, np.random.default_rng(i).normal(0, 0.1, 8 * rate).astype(np.float32), rate)
        place.append(path)
    chirp = tmp_path / "chirp.wav"
    sf.write(chirp, _chirp(1.0, 500, 2000, 0), rate)
    clips = _SegmentClips({"chirp": [(chirp, 1.0, [(0.0, 1.0)])]}, rate, None, _PlaceExcerpts(place, rate))
    assert set(clips.labels) == {"chirp", "__place0__", "__place1__", "__place2__", "__place3__"}
    rehearsal = clips.place_only()
    assert rehearsal is not None and "chirp" not in rehearsal.labels
    new = SceneConfig(labels=("chirp",), events=(1, 1), distractors=(3, 3), sample_rate=rate, duration=10.0)
    old = SceneConfig(labels=("__none__",), events=(0, 0), distractors=(3, 3), sample_rate=rate, duration=10.0)
    from_place = 0
    for seed in range(8):
        for config, library in ((new, clips), (old, rehearsal)):
            scene = synthesize_scene([seed], config, library)
            assert {e.label for e in scene.events} <= {"chirp"}
            from_place += sum(d["name"].startswith("__place") for d in scene.info["distractors"])
        excerpt = clips.sample("__place1__", np.random.default_rng(seed))
        assert 0.5 * rate <= len(excerpt.audio) <= 3 * rate + 1
    assert from_place >= 12  # of 48 distractors, about half from the place
