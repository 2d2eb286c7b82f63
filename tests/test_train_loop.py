"""The training loop: schedule, loss, EMA, deterministic resume, threshold tuning, and the quick recipe end to end."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from streamdet.models import build_model, load_checkpoint
from streamdet.train.datasets import read_scenes
from streamdet.train.loop import EMA, TrainConfig, Trainer, frame_map, lr_at, sed_loss
from streamdet.train.synth import SceneConfig, synthesize_split
from streamdet.train.thresholds import tracks_to_events, tune_postprocessing, tune_thresholds
from streamdet.train.torch_data import FeatureBank

from streamdet.metrics import events_from_records

LABELS = ["alarm", "siren", "knock"]
TINY_HTSAT = {
    "sample_rate": 16000, "clip_samples": 16000, "n_fft": 512, "hop_length": 128, "n_mels": 32, "fmin": 50.0,
    "fmax": 8000.0, "spec_size": 64, "patch_size": 4, "patch_stride": [4, 4], "embed_dim": 8, "depths": [1, 1],
    "num_heads": [1, 2], "window_size": 4,
}


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("htsat", labels=LABELS, num_classes=len(LABELS), **TINY_HTSAT)


@pytest.fixture(scope="module")
def tiny_bank(tmp_path_factory: pytest.TempPathFactory) -> FeatureBank:
    """Log-mels of 8 synthesised 4 s scenes with 1-2 events of three classes (strong labels)."""
    root = tmp_path_factory.mktemp("scenes")
    config = SceneConfig(sample_rate=16000, duration=4.0, labels=tuple(LABELS), events=(1, 2), distractors=(0, 0))
    synthesize_split(root, 8, seed=0, config=config)
    return FeatureBank.build(read_scenes(root), tiny_model(), LABELS)


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_min_lr() -> None:
    cfg = TrainConfig(epochs=2, steps_per_epoch=50, lr=1e-3, min_lr=1e-5, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    middle = 10 + (cfg.total_steps - 10) // 2
    assert lr_at(middle, cfg) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert lr_at(cfg.total_steps, cfg) == pytest.approx(1e-5)
    decay = [lr_at(s, cfg) for s in range(10, cfg.total_steps)]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_frame_loss_counts_strong_examples_only() -> None:
    gen = torch.Generator().manual_seed(0)
    clip_logits, frame_logits = torch.randn(3, 4, generator=gen), torch.randn(3, 5, 4, generator=gen)
    clip = torch.rand(3, 4, generator=gen).round()
    frame = torch.rand(3, 5, 4, generator=gen).round()
    strong = torch.tensor([True, False, True])
    loss, parts = sed_loss(clip_logits, frame_logits, clip, frame, strong, clip_weight=1.0, frame_weight=0.5)

    def bce(logit: torch.Tensor, target: torch.Tensor) -> float:
        p = torch.sigmoid(logit.double())
        return float(-(target * p.log() + (1 - target) * (1 - p).log()).mean())

    want_frame = (bce(frame_logits[0], frame[0]) + bce(frame_logits[2], frame[2])) / 2
    assert parts["clip_loss"] == pytest.approx(bce(clip_logits, clip), rel=1e-5)
    assert parts["frame_loss"] == pytest.approx(want_frame, rel=1e-5)
    assert float(loss) == pytest.approx(parts["clip_loss"] + 0.5 * want_frame, rel=1e-5)
    frame[1] = 1 - frame[1]  # the weak example's frame targets do not matter
    assert sed_loss(clip_logits, frame_logits, clip, frame, strong, 1.0, 0.5)[1]["frame_loss"] == parts["frame_loss"]


def test_ema_follows_the_decay_with_warm_up_and_copies_buffers() -> None:
    model = torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(7.0)
    ema.update(model)  # first update: decay min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.module.weight, torch.full((2,), d * 1.0 + (1 - d) * 3.0))
    assert torch.equal(ema.module.running_mean, torch.full((2,), 7.0))
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((2,), 3.0), atol=1e-6)


@pytest.mark.slow
def test_interrupted_training_resumes_exactly(tiny_bank: FeatureBank, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=4, warmup_steps=2, ema_decay=0.9, threads=1)
    whole = Trainer(tiny_model(), tiny_bank, LABELS, cfg, tmp_path / "whole", val=tiny_bank, val_indices=[0, 1])
    summary = whole.fit()
    assert summary["steps"] == 8 and summary["epochs"] == 2 and len(summary["history"]) == 2

    first = Trainer(tiny_model(), tiny_bank, LABELS, cfg, tmp_path / "split", val=tiny_bank, val_indices=[0, 1])
    first.fit(max_epochs=1)  # "interrupted" after one epoch
    assert first.step == 4
    second = Trainer(tiny_model(seed=1), tiny_bank, LABELS, cfg, tmp_path / "split", val=tiny_bank,
                     val_indices=[0, 1])
    second.fit(resume=True)
    assert second.step == 8
    for (name, a), b in zip(whole.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(whole.ema.module.parameters(), second.ema.module.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in second.history]

    best = load_checkpoint(tmp_path / "whole" / "best.pt")  # the EMA weights in streamdet's own format
    assert list(best.labels) == LABELS
    assert "val" in whole.history[-1] and "event_f1_macro" in whole.history[-1]["val"]
    assert 0.0 <= whole.history[-1]["val"]["frame_map"] <= 1.0  # what selects best.pt by default
    changed = Trainer(tiny_model(), tiny_bank, LABELS, TrainConfig(**{**cfg.to_dict(), "lr": 5e-4}),
                      tmp_path / "split")
    with pytest.raises(ValueError, match="differs in"):
        changed.fit(resume=True)


def test_threshold_tuning_finds_the_separating_on_threshold() -> None:
    """Scores of 0.4 over the true events and 0.2 elsewhere: the default 0.5 finds nothing, tuning finds them."""
    frame = 0.1
    tracks, rows = {}, []
    for k in range(4):
        scores = np.full((100, 1), 0.2, np.float32)
        scores[20 + k : 40 + k, 0] = 0.4
        name = f"f{k}.wav"
        tracks[name] = (scores, frame, 10.0)
        rows.append((name, 2.0 + k * frame, 4.0 + k * frame, "beep"))
    thresholds, report = tune_thresholds(tracks, events_from_records(rows), ["beep"])
    on, off = thresholds["beep"]
    assert 0.2 < off <= on <= 0.4
    assert report["classes"]["beep"]["default_event_f1"] == 0.0 and report["classes"]["beep"]["event_f1"] == 1.0
    assert json.dumps(report)  # JSON-able, stored in the model's provenance


def test_frame_map_scores_localisation_without_thresholds() -> None:
    from types import SimpleNamespace

    from streamdet.train.datasets import StrongEvent

    rec = SimpleNamespace(path=Path("a.wav"), events=[StrongEvent("beep", 1.0, 2.0)])
    exact = np.zeros((40, 1), np.float32)
    exact[10:20] = 0.3  # any monotone score that ranks the true frames first is perfect
    late = np.roll(exact, 5, axis=0)
    assert frame_map({"a.wav": (exact, 0.1, 4.0)}, [rec], ["beep"]) == pytest.approx(1.0)
    assert frame_map({"a.wav": (late, 0.1, 4.0)}, [rec], ["beep"]) < 0.6


def test_post_processing_tuning_merges_a_cadenced_class_and_drops_blips() -> None:
    """A beeping class (0.5 s on / 0.3 s off, labelled as one event) needs min_gap; a class with one-frame blips
    besides its true events needs min_duration. Tuning finds both, per class, and reaches F1 1."""
    frame = 0.1
    tracks, rows = {}, []
    for k in range(4):
        scores = np.full((100, 2), 0.05, np.float32)
        for a in range(20, 44, 8):  # beeps 2.0-2.5, 2.8-3.3, 3.6-4.1
            scores[a + k : a + k + 5, 0] = 0.9
        rows.append((f"f{k}.wav", 2.0 + k * frame, 4.1 + k * frame, "beep"))
        scores[60 + k : 75 + k, 1] = 0.9
        scores[[10 + k, 85 + k], 1] = 0.9  # blips
        rows.append((f"f{k}.wav", 6.0 + k * frame, 7.5 + k * frame, "hum"))
        tracks[f"f{k}.wav"] = (scores, frame, 10.0)
    gt = events_from_records(rows)
    thresholds, post, report = tune_postprocessing(tracks, gt, ["beep", "hum"])
    assert 0.3 <= post["beep"]["min_gap"] <= 1.5 and post["beep"]["min_duration"] <= 0.5
    assert post["hum"]["min_gap"] == 0.0 and 0.125 <= post["hum"]["min_duration"] <= 0.5
    beep, hum = report["classes"]["beep"], report["classes"]["hum"]
    assert beep["event_f1"] == 1.0 and beep["default_event_f1"] == 0.0
    assert hum["event_f1"] == 1.0 and hum["default_event_f1"] < 0.7
    assert json.dumps(report) and json.dumps(post)
    # the tuned values mean the same in the tracker the engine runs
    events = tracks_to_events(tracks, ["beep", "hum"], thresholds,
                              min_gap={c: v["min_gap"] for c, v in post.items()},
                              min_duration={c: v["min_duration"] for c, v in post.items()})
    assert sorted((e.label, round(e.onset, 3), round(e.offset, 3)) for e in events["f0.wav"]) == [
        ("beep", 2.0, 4.1), ("hum", 6.0, 7.5)]


@pytest.mark.slow
def test_quick_recipe_runs_end_to_end_and_exports_a_contract_model(cli, tmp_path: Path) -> None:
    """`streamdet train --recipe alerts --quick`: synthesis -> training -> tuning -> export -> evaluation."""
    out = tmp_path / "quick"
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "sounds"  # beside the checkout, as in CI
    with_real = (real / "targets" / "MANIFEST.csv").is_file()
    args = ("--real", real) if with_real else ()
    result = cli("train", "--recipe", "alerts", "--quick", "--out", out, *args, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    losses = [h["loss"] for h in report["history"]]
    assert len(losses) == 2 and losses[-1] < losses[0], losses  # the loss falls
    first, last = report["training"]["first_loss"], report["training"]["final_loss"]
    assert math.isfinite(first) and last < first

    from streamdet.train.synth import ALERTS_LABELS

    import streamdet

    det = streamdet.Detector(out / "alerts.onnx", device="cpu")
    meta = det.session.metadata
    assert det.labels == list(ALERTS_LABELS)
    assert (meta.sample_rate, meta.window_samples, meta.model_type) == (16000, 32000, "htsat")
    assert set(meta.thresholds) == set(ALERTS_LABELS)  # tuned on validation, stored in the metadata
    assert set(meta.postprocess) == set(ALERTS_LABELS)  # likewise min_duration / min_gap per class
    assert det.min_gap == {c: v["min_gap"] for c, v in meta.postprocess.items()}
    assert all(0 < off <= on < 1 for on, off in meta.thresholds.values())
    prov = meta.provenance
    assert prov["recipe"] == "streamdet train --recipe alerts --quick" + (" --real DIR" if with_real else "")
    assert set(prov["evaluation"]["test"]) >= {"event_f1_macro", "segment_f1_macro", "per_class"}
    framewise, clipwise = det.session.run(np.zeros((2, 32000), np.float32))
    assert framewise.shape == (2, 16, 7) and clipwise.shape == (2, 7)
    assert (out / "example.wav").exists() and (out / "test_predictions.tsv").exists()
    assert report["onnx_bytes"] <= 15_000_000
    if with_real:  # the real corpus: split by source, real validation scenes, the real-audio benchmark
        real_fig = report["figures"]["real"]
        assert set(real_fig["scenes"]["classes"]) <= set(ALERTS_LABELS) and real_fig["scenes"]["classes"]
        assert real_fig["backgrounds"]["overall"]["minutes"] > 5 and "music" in real_fig["backgrounds"]["per_kind"]
        assert set(real_fig["steady"]["per_signal"]) >= {"silence", "white -30 dBFS"}
        assert prov["real_audio"]["backgrounds"]["minutes"] == real_fig["backgrounds"]["overall"]["minutes"]
        assert report["training"]["mining"]["files"] == 96
        attribution = (out / "ATTRIBUTION.md").read_text()
        assert attribution.count("| val |") > 0 and attribution.count("| train |") > 0
        assert "real audio (validation sources)" in result.stdout
    else:
        assert "real" not in report["figures"] and prov["real_audio"] is None


def test_recipe_reuses_a_synthesised_split_whatever_the_speech_cache_path(tmp_path: Path) -> None:
    """The split key ignores where speech is cached (an absolute or relative output path); other settings count."""
    from streamdet.train.recipes import _Log, _synth

    base = {"sample_rate": 16000, "duration": 2.0, "labels": ("knock",), "events": (1, 1), "distractors": (0, 0)}
    out = tmp_path / "split"
    messages: list[str] = []

    class Recorder(_Log):
        def __call__(self, msg: str) -> None:
            messages.append(msg)

    log = Recorder(None)
    _synth(out, 2, 0, SceneConfig(**base, speech_cache_dir=str(tmp_path / "a")), 1, log, "synth")
    first = (out / "audio" / "scene_00000.wav").stat().st_mtime_ns
    _synth(out, 2, 0, SceneConfig(**base, speech_cache_dir="relative/speech_cache"), 1, log, "synth")
    assert "already in" in messages[-1]
    assert (out / "audio" / "scene_00000.wav").stat().st_mtime_ns == first
    _synth(out, 2, 0, SceneConfig(**{**base, "snr_db": (0.0, 5.0)}, speech_cache_dir=None), 1, log, "synth")
    assert any("synthesising it again" in m for m in messages)
    assert "already in" not in messages[-1]


def test_files_scored_together_must_have_distinct_names(tmp_path: Path) -> None:
    """Two validation splits both holding ``scene_00000.wav`` once shared one key: one file's score track hid the
    other's and their events were merged. ``ground_truth`` now refuses them, and the recipe names its real
    validation scenes apart from the synthetic ones."""
    from streamdet.train.datasets import AudioRecord, StrongEvent
    from streamdet.train.loop import ground_truth
    from streamdet.train.recipes import _Log, _synth

    a = AudioRecord(tmp_path / "val" / "scene_00000.wav", 10.0, ("knock",), (StrongEvent("knock", 1.0, 2.0),))
    b = AudioRecord(tmp_path / "real_val" / "scene_00000.wav", 10.0, ("speech",), (StrongEvent("speech", 3.0, 4.0),))
    with pytest.raises(ValueError, match=r"share a name.*scene_00000\.wav"):
        ground_truth([a, b], ["knock", "speech"])
    gt, _ = ground_truth([a], ["knock", "speech"])
    assert [e.label for e in gt["scene_00000.wav"]] == ["knock"]
    config = SceneConfig(sample_rate=16000, duration=2.0, labels=("knock",), events=(1, 1), distractors=(0, 0))
    plain = _synth(tmp_path / "plain", 2, 0, config, 1, _Log(None), "synth")
    real = _synth(tmp_path / "real", 2, 0, config, 1, _Log(None), "synth", prefix="real_scene")
    names = [r.path.name for r in read_scenes(plain) + read_scenes(real)]
    assert len(set(names)) == 4 and "real_scene_00000.wav" in names
