"""Adapting a trained model to new data (``streamdet train --recipe alerts --from MODEL``): the teacher's loss, the
weight interpolation and the rule that picks its mixing weight, the start-model checks, and the quick recipe end to
end from the bundled model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamdet.models import HTSAT, HTSATConfig, save_checkpoint
from streamdet.train.adapt import check_start_model, choose_alpha, interpolate_weights
from streamdet.train.loop import distill_loss
from torch import nn

from streamdet.session import BUNDLED_MODEL

TINY = {"sample_rate": 16000, "clip_samples": 16000, "n_fft": 256, "hop_length": 128, "n_mels": 32, "fmin": 50.0,
        "fmax": 8000.0, "spec_size": 64, "patch_size": 4, "patch_stride": (4, 4), "embed_dim": 16, "depths": (1, 1),
        "num_heads": (2, 2), "window_size": 4, "drop_path_rate": 0.0}


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    a.train()(torch.randn(8, 3))  # batch-norm statistics and counters differ between the two
    b.train()(torch.randn(8, 3))
    b.train()(torch.randn(8, 3))
    return a, b


def test_interpolation_ends_are_the_two_models_and_the_middle_is_their_mean() -> None:
    start, tuned = _pair()
    s0, s1 = start.state_dict(), tuned.state_dict()
    for alpha, expect in ((0.0, s0), (1.0, s1)):
        mixed = interpolate_weights(start, tuned, alpha).state_dict()
        for k, v in mixed.items():
            ref = expect[k] if v.is_floating_point() else s1[k]  # integer counters are the tuned model's
            assert torch.equal(v, ref), (alpha, k)
    half = interpolate_weights(start, tuned, 0.5).state_dict()
    assert torch.allclose(half["0.weight"], (s0["0.weight"] + s1["0.weight"]) / 2)
    assert torch.allclose(half["1.running_var"], (s0["1.running_var"] + s1["1.running_var"]) / 2)
    assert int(half["1.num_batches_tracked"]) == 2
    assert torch.equal(tuned.state_dict()["0.weight"], s1["0.weight"])  # the inputs are not changed
    with pytest.raises(ValueError, match="alpha"):
        interpolate_weights(start, tuned, 1.5)
    with pytest.raises(ValueError, match="different parameters"):
        interpolate_weights(start, nn.Linear(3, 4), 0.5)


def test_the_mixing_weight_is_the_best_real_figure_that_keeps_the_synthetic_one() -> None:
    start, tuned = _pair()
    w0, w1 = start[0].weight.detach().clone(), tuned[0].weight.detach().clone()

    def alpha_of(model: nn.Module) -> float:  # recover the mixing weight from the weights themselves
        return float(((model[0].weight.detach() - w0) / (w1 - w0)).mean())

    def score(model: nn.Module) -> dict[str, float]:
        a = alpha_of(model)
        return {"synthetic": 0.80 - 0.04 * a * a, "real": 0.40 + 0.2 * a}  # real gains, synthetic losses

    alpha, table = choose_alpha(start, tuned, (0.25, 0.5, 0.75, 1.0), score, tolerance=0.011)
    assert [round(r["alpha"], 2) for r in table] == [0.0, 0.25, 0.5, 0.75, 1.0]  # the start is always scored
    # synthetic floor 0.789: 0.25 -> 0.7975 and 0.5 -> 0.79 pass, 0.75 -> 0.7775 does not; 0.5 has the best real
    assert alpha == 0.5
    alpha, _ = choose_alpha(start, tuned, (0.5, 1.0), lambda m: {"synthetic": 0.8 - alpha_of(m), "real": 0.5},
                            tolerance=0.01)
    assert alpha == 0.0  # nothing keeps the synthetic figure: the start model is kept


def test_the_teacher_loss_pulls_towards_the_teacher_and_vanishes_there() -> None:
    teacher_clip, teacher_frame = torch.tensor([[2.0, -1.0]]), torch.tensor([[[2.0, -1.0], [0.5, 0.0]]])
    at = [teacher_clip.clone().requires_grad_(), teacher_frame.clone().requires_grad_()]
    distill_loss(*at, teacher_clip, teacher_frame).backward()
    assert all(float(t.grad.abs().max()) < 1e-6 for t in at)
    away = [torch.zeros_like(teacher_clip, requires_grad=True), torch.zeros_like(teacher_frame, requires_grad=True)]
    distill_loss(*away, teacher_clip, teacher_frame).backward()
    # a gradient step moves each logit towards the teacher's: the gradient has the opposite sign of the gap
    assert float(away[0].grad[0, 0]) < 0 < float(away[0].grad[0, 1])
    assert float(away[1].grad[0, 1, 0]) < 0


def test_a_start_model_with_other_labels_or_front_end_is_refused() -> None:
    labels = ["hum", "click"]
    model = HTSAT(HTSATConfig(num_classes=2, **TINY), labels=labels)
    info = {"path": "x.onnx", "window_seconds": 1.0}
    check_start_model(model, info, labels, 1.0, model)
    with pytest.raises(ValueError, match="labels"):
        check_start_model(model, info, ["hum", "beep"], 1.0, model)
    other = HTSAT(HTSATConfig(num_classes=2, **{**TINY, "n_mels": 64}), labels=labels)
    with pytest.raises(ValueError, match="front-end"):
        check_start_model(model, info, labels, 1.0, other)
    with pytest.raises(ValueError, match="window"):
        check_start_model(model, info, labels, 2.0, model)


def test_train_from_a_missing_or_foreign_model_exits_2_before_any_work(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = cli("train", "--recipe", "alerts", "--quick", "--from", tmp_path / "nope.onnx", "--out", out)
    assert r.returncode == 2 and "nope.onnx" in r.stderr and "no such model" in r.stderr
    ckpt = tmp_path / "other.pt"
    save_checkpoint(HTSAT(HTSATConfig(num_classes=2, **TINY), labels=["hum", "click"]), ckpt)
    r = cli("train", "--recipe", "alerts", "--quick", "--from", ckpt, "--out", out)
    assert r.returncode == 2 and "labels" in r.stderr and "hum" in r.stderr
    assert not out.exists()  # refused before synthesis
    r = cli("train", "--from", "alerts", "--out", tmp_path / "mine.onnx")  # teaching, with --clips forgotten
    assert r.returncode == 2 and "needs --clips" in r.stderr and not (tmp_path / "mine.onnx").exists()


@pytest.mark.slow
def test_quick_recipe_adapts_the_bundled_model(cli, tmp_path: Path) -> None:
    """`streamdet train --recipe alerts --quick --from alerts`: the bundled model fine-tuned with itself as teacher,
    the weight interpolation chosen on validation, tuned, exported with the adaptation in its provenance."""
    import hashlib

    import streamdet

    out = tmp_path / "adapted"
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "sounds"  # beside the checkout, as in CI
    with_real = (real / "targets" / "MANIFEST.csv").is_file()
    args = ("--real", real) if with_real else ()
    result = cli("train", "--recipe", "alerts", "--quick", "--from", "alerts", "--out", out, *args, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert all("distill_loss" in h and h["distill_loss"] > 0 for h in report["history"])
    adaptation = report["training"]["adaptation"]
    assert adaptation["from_sha256"] == hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest()
    table = {r["alpha"]: r for r in adaptation["alphas"]}
    assert set(table) == {0.0, 0.5, 1.0}  # the quick recipe's grid, and the start model
    kept = table[adaptation["alpha"]]
    assert kept["synthetic"] >= table[0.0]["synthetic"] - 0.005  # the rule, as recorded
    assert kept["real"] == max(r["real"] for r in table.values() if r["synthetic"] >= table[0.0]["synthetic"] - 0.005)
    assert (out / "adapt" / "interpolated.pt").exists() and not (out / "train").exists()
    if with_real:  # "synthetic" is judged on scenes without recorded audio, apart from the real validation scenes
        assert "without recorded audio" in adaptation["metric"] and (out / "data" / "val_synthetic").is_dir()
        assert report["training"]["mining"]["files"] == 96 and "real" in report["figures"]
    det = streamdet.Detector(out / "alerts.onnx", device="cpu")
    prov = det.session.metadata.provenance
    assert prov["recipe"] == ("streamdet train --recipe alerts --quick" + (" --real DIR" if with_real else "")
                              + " --from MODEL")
    assert prov["training"]["adaptation"]["alpha"] == adaptation["alpha"]
    assert "adapted from alerts.onnx" in prov["data"]
