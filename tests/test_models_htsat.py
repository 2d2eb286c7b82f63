"""HTS-AT parity with the official code (tiny fixture), the full-size key layout, batching and window limits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamdet.models import HTSAT, HTSATConfig, ModelOutput, htsat_official_state_dict, load_checkpoint
from streamdet.models.swin import relative_position_index, shifted_window_mask, window_partition, window_reverse

FIXTURES = Path(__file__).parent / "fixtures" / "htsat"
ATOL = 1e-5


@pytest.fixture(scope="module")
def model() -> HTSAT:
    return load_checkpoint(FIXTURES / "tiny_state_dict.pt")


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "tiny_io.npz") as npz:
        return {k: npz[k] for k in npz.files}


def _close(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    assert tuple(actual.shape) == expected.shape, what
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=0, atol=ATOL, err_msg=what)


def test_tiny_checkpoint_architecture_is_inferred(model: HTSAT) -> None:
    config = model.config
    assert (config.embed_dim, config.depths, config.num_heads) == (16, (2, 2, 2, 2), (1, 2, 4, 8))
    assert config.num_classes == 5
    assert (config.window_size, config.spec_size, config.patch_size, config.patch_stride) == (8, 256, 4, (4, 4))
    assert (config.sample_rate, config.n_fft, config.hop_length, config.n_mels) == (32000, 1024, 320, 64)
    assert model.model_type == "htsat" and model.output_activation == "sigmoid" and not model.training
    assert model.labels == [f"class_{i}" for i in range(5)]
    assert sum(p.numel() for p in model.parameters()) == 1667153 - 2 * 513 * 1024 - 513 * 64 - (5 * 5 + 5)


def test_every_intermediate_matches_the_official_code_10s(model: HTSAT, data) -> None:
    with torch.no_grad():
        wave = torch.from_numpy(data["wave_10s"])
        logmel = model.frontend(wave)
        _close(logmel, data["10s_logmel"][:, 0], "log-mel")
        x = model.normalize_features(logmel)
        _close(x, data["10s_after_bn0"][:, 0], "after bn0")
        image = model.to_image(x)
        _close(image, data["10s_image"], "image (bicubic 1001 -> 1024, fold 4x256)")
        tokens = model.patch_embed(image)
        _close(tokens, data["10s_patch_embed_out"], "patch embed")
        for i, layer in enumerate(model.layers):
            tokens = layer(tokens)
            _close(tokens, data[f"10s_layer{i}_out"], f"stage {i}")
        tokens = model.norm(tokens)
        _close(tokens, data["10s_final_norm_out"], "final norm")
        tscam_in = model.tscam_input(tokens)
        _close(tscam_in, data["10s_tscam_in"], "tscam input")
        _close(tscam_in.mean(dim=(2, 3)), data["10s_latent_output"], "latent output")
        logits = model.tscam_conv(tscam_in)
        _close(logits, data["10s_tscam_logits"], "tscam logits")


@pytest.mark.parametrize("case", ["10s", "6_5s"])
def test_outputs_match_the_official_code(model: HTSAT, data, case: str) -> None:
    with torch.no_grad():
        out = model(torch.from_numpy(data[f"wave_{case}"]))
    assert isinstance(out, ModelOutput)
    official_logits = data[f"{case}_tscam_logits"][:, :, 0].transpose(0, 2, 1)  # [1, 32, 5]
    # framewise: sigmoid of the 32 token-semantic steps, no repetition
    _close(out.framewise, 1 / (1 + np.exp(-official_logits)), "framewise")
    assert out.framewise.shape == (1, 32, 5)
    # the official output repeats each step 32x to 1024 frames
    _close(out.framewise.repeat_interleave(32, dim=1), data[f"{case}_framewise_output"], "official framewise")
    _close(out.clipwise, data[f"{case}_clipwise_output"], "clipwise")
    _close(out.logits, official_logits.mean(axis=1), "clip logits")
    _close(torch.sigmoid(out.logits), data[f"{case}_clipwise_output"], "sigmoid(logits)")
    if case == "6_5s":  # stretched 651 -> 1024 frames
        with torch.no_grad():
            image = model.to_image(model.normalize_features(model.frontend(torch.from_numpy(data["wave_6_5s"]))))
        _close(image, data["6_5s_image"], "6.5 s image")


def test_batch_of_three_equals_three_single_runs(model: HTSAT, data) -> None:
    rng = np.random.default_rng(7)
    waves = np.concatenate(
        [data["wave_10s"], data["wave_10s"][:, ::-1], 0.05 * rng.standard_normal((1, 320000))]
    ).astype(np.float32)
    with torch.no_grad():
        batched = model(torch.from_numpy(waves))
        singles = [model(torch.from_numpy(waves[i : i + 1])) for i in range(3)]
    for field in ModelOutput._fields:
        expected = torch.cat([getattr(s, field) for s in singles])
        assert torch.allclose(getattr(batched, field), expected, rtol=0, atol=ATOL), field


def test_forward_from_features_and_normalized_path_agree(model: HTSAT, data) -> None:
    wave = torch.from_numpy(data["wave_6_5s"])
    with torch.no_grad():
        features = model.frontend(wave)
        direct = model(wave)
        via_features = model.forward_from_features(features)
        via_normalized = model.forward_from_features(model.normalize_features(features), normalized=True)
    assert torch.equal(direct.framewise, via_features.framewise)
    assert torch.equal(direct.clipwise, via_normalized.clipwise)


def test_window_limits(model: HTSAT) -> None:
    assert model.native_window_samples == 320000 and model.sample_rate == 32000
    assert model.steps_for(320000) == 32
    assert model.steps_for(327679) == 32  # 1024 frames: the largest window the image holds
    assert model.steps_for(513) == 32
    assert model.step_seconds_for(320000) == pytest.approx(0.3125)
    with pytest.raises(ValueError, match=r"1025 log-mel frames.*longest window is 327679 samples"):
        model.steps_for(327680)
    with pytest.raises(ValueError, match="more than 512 samples"):
        model.steps_for(512)
    with pytest.raises(ValueError, match="at most 1024 log-mel frames"):
        model(torch.zeros(1, 327680))


def test_frontend_config_is_json_and_describes_the_logmel(model: HTSAT) -> None:
    config = json.loads(json.dumps(model.frontend_config()))
    assert config["type"] == "logmel"
    assert (config["n_fft"], config["hop_length"], config["n_mels"], config["fmin"], config["fmax"]) == (
        1024, 320, 64, 50.0, 14000.0
    )
    assert json.loads(json.dumps(model.architecture()))["depths"] == [2, 2, 2, 2]


def test_full_size_model_has_the_official_keys_shapes_and_parameter_counts() -> None:
    reference = json.loads((FIXTURES / "keys_full_audioset.json").read_text())
    with torch.device("meta"):
        model = HTSAT(HTSATConfig())
    official = htsat_official_state_dict(model)
    expected = {entry["key"]: entry for entry in reference["keys"]}
    assert set(official) == set(expected)
    for key, tensor in official.items():
        assert list(tensor.shape) == expected[key]["shape"], key
        assert str(tensor.dtype).removeprefix("torch.") == expected[key]["dtype"], key
    buffers = {k for k, e in expected.items() if e["kind"] == "buffer"}
    stored = sum(official[k].numel() for k in official if k not in buffers)
    assert stored == reference["num_parameters_total"] == 31_325_143
    used = sum(p.numel() for p in model.parameters())
    assert used == 29_963_431
    assert stored - used == 2 * 513 * 1024 + 513 * 64 + 527 * 527 + 527  # STFT + melW + unused head
    assert model.steps_for(320000) == 32 and model.config.num_features == 768


def test_swin_helpers() -> None:
    x = torch.randn(2, 16, 16, 3)
    windows = window_partition(x, 8)
    assert windows.shape == (8, 64, 3)
    assert torch.equal(window_reverse(windows, 8, 16, 16), x)
    index = relative_position_index(8)
    assert index.shape == (64, 64) and index.dtype == torch.int64
    assert index.min() == 0 and index.max() == 15 * 15 - 1 and torch.equal(index.diagonal(), torch.full((64,), 112))
    mask = shifted_window_mask(16, 16, 8, 4)
    assert mask.shape == (4, 64, 64)
    assert not mask[0].any() and set(mask.unique().tolist()) == {-100.0, 0.0}


def test_fresh_models_train_and_backpropagate() -> None:
    torch.manual_seed(0)
    model = HTSAT(HTSATConfig(num_classes=3, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)))
    assert model.training
    out = model(0.1 * torch.randn(2, 64000))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, torch.ones(2, 3))
    loss.backward()
    assert model.tscam_conv.weight.grad is not None and model.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.bn0.num_batches_tracked.item() == 1
