"""AST parity with the official code and transformers (tiny fixtures), full-size key layouts, positional-grid
adaptation, the token-semantic variant and batching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from streamdet.models import (
    AST,
    ASTConfig,
    ASTTokenSemantic,
    ModelOutput,
    ast_official_state_dict,
    ast_transformers_state_dict,
    load_checkpoint,
    resize_pos_grid,
)
from streamdet.models.convert import strip_ast_official, transformers_to_streamdet

FIXTURES = Path(__file__).parent / "fixtures" / "ast"
OFFICIAL = FIXTURES / "official_tiny" / "ast_tiny224_depth1_f10_t10_tdim1024_label5.pth"
HF_TINY = FIXTURES / "hf_tiny"


@pytest.fixture(scope="module")
def official() -> AST:
    return load_checkpoint(OFFICIAL)


@pytest.fixture(scope="module")
def hf() -> AST:
    return load_checkpoint(HF_TINY)


@pytest.fixture(scope="module")
def official_io() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "official_tiny" / "official_tiny_io.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def hf_io() -> dict[str, np.ndarray]:
    with np.load(HF_TINY / "tiny_io.npz") as npz:
        return {k: npz[k] for k in npz.files}


# ------------------------------------------------------------------------------------------------ official tiny


def test_official_tiny_architecture_is_inferred(official: AST) -> None:
    c = official.config
    assert (c.embed_dim, c.depth, c.num_heads, c.mlp_dim, c.num_classes) == (192, 1, 3, 768, 5)
    assert (c.fstride, c.tstride, c.target_length, c.f_dim, c.t_dim) == (10, 10, 1024, 12, 101)
    assert (c.block_eps, c.head_eps) == (1e-6, 1e-5)
    assert official.model_type == "ast" and not official.training
    stored = 1_115_413
    assert sum(p.numel() for p in official.parameters()) == stored - 2 * (1000 * 192 + 1000)


@pytest.mark.parametrize("features, logits", [("fbank_input", "logits"), ("fbank_input_4s", "logits_4s")])
def test_official_logits_from_features(official: AST, official_io, features: str, logits: str) -> None:
    with torch.no_grad():
        out = official.forward_from_features(torch.from_numpy(official_io[features]))
    np.testing.assert_allclose(out.logits.numpy(), official_io[logits], rtol=0, atol=1e-5)
    if features == "fbank_input":  # the figures quoted in the fixture README
        expected = [-0.40978357, -0.10102368, -0.87772322, -1.11958909, 0.50672793]
        np.testing.assert_allclose(out.logits.numpy()[0], expected, rtol=0, atol=1e-5)


def test_official_embeddings(official: AST, official_io) -> None:
    features = torch.from_numpy(official_io["fbank_input"])
    with torch.no_grad():
        patches = official.patch_embed(features.unsqueeze(1).transpose(2, 3))
        prefix = torch.cat([official.cls_token, official.dist_token], dim=1)
        embeddings = torch.cat([prefix, patches], dim=1) + official.pos_embed
    np.testing.assert_allclose(embeddings.numpy(), official_io["embeddings"], rtol=0, atol=1e-5)


def test_official_logits_from_waveform_through_our_frontend(official: AST, official_io) -> None:
    with torch.no_grad():
        out = official(torch.from_numpy(official_io["wave_10s"])[None])
    np.testing.assert_allclose(out.logits.numpy(), official_io["logits"], rtol=0, atol=1e-4)
    assert out.framewise.shape == (1, 1, 5)
    assert torch.equal(out.framewise[:, 0], out.clipwise)
    assert torch.allclose(out.clipwise, torch.sigmoid(out.logits))


# ------------------------------------------------------------------------------------------------ transformers tiny


def test_transformers_tiny_config(hf: AST) -> None:
    c = hf.config
    assert (c.embed_dim, c.depth, c.num_heads, c.mlp_dim, c.num_classes) == (32, 2, 2, 64, 5)
    assert (c.block_eps, c.head_eps) == (1e-12, 1e-12)
    assert hf.source["format"] == "ast_transformers" and hf.source["weights_file"] == "model.safetensors"


@pytest.mark.parametrize("case", ["10s", "4s"])
def test_transformers_logits_from_features_and_waveform(hf: AST, hf_io, case: str) -> None:
    with torch.no_grad():
        from_features = hf.forward_from_features(torch.from_numpy(hf_io[f"features_{case}"]))
        from_wave = hf(torch.from_numpy(hf_io[f"wave_{case}"])[None])
    np.testing.assert_allclose(from_features.logits.numpy(), hf_io[f"logits_{case}"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(from_wave.logits.numpy(), hf_io[f"logits_{case}"], rtol=0, atol=1e-4)


def test_transformers_batch_logits(hf: AST, hf_io) -> None:
    features = torch.from_numpy(np.concatenate([hf_io["features_10s"], hf_io["features_4s"]]))
    with torch.no_grad():
        out = hf.forward_from_features(features)
    np.testing.assert_allclose(out.logits.numpy(), hf_io["logits_batch_10s_4s"], rtol=0, atol=1e-5)


def test_transformers_reference_model_agrees_when_installed(hf: AST, hf_io) -> None:
    transformers = pytest.importorskip("transformers")
    reference = transformers.ASTForAudioClassification.from_pretrained(str(HF_TINY)).eval()
    features = torch.from_numpy(hf_io["features_10s"])
    with torch.no_grad():
        expected = reference(features).logits
        ours = hf.forward_from_features(features).logits
    assert torch.allclose(ours, expected, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ batching, variants


@pytest.mark.parametrize("cls", [AST, ASTTokenSemantic])
def test_batch_of_three_equals_three_single_runs(cls: type[AST], hf_io) -> None:
    torch.manual_seed(0)
    model = cls(ASTConfig(num_classes=4, embed_dim=32, depth=2, num_heads=2, mlp_dim=64)).eval()
    rng = np.random.default_rng(1)
    waves = np.stack([hf_io["wave_10s"], hf_io["wave_10s"][::-1], 0.1 * rng.standard_normal(163840)])
    waves = torch.from_numpy(waves.astype(np.float32))
    with torch.no_grad():
        batched = model(waves)
        singles = [model(waves[i : i + 1]) for i in range(3)]
    for field in ModelOutput._fields:
        expected = torch.cat([getattr(s, field) for s in singles])
        assert torch.allclose(getattr(batched, field), expected, rtol=0, atol=1e-5), (cls.__name__, field)


def test_token_semantic_variant_outputs_frame_maps() -> None:
    torch.manual_seed(0)
    model = ASTTokenSemantic(ASTConfig(num_classes=3, embed_dim=32, depth=1, num_heads=2, mlp_dim=64)).eval()
    assert model.model_type == "ast_tscam"
    assert model.tscam_conv.kernel_size == (12, 3) and not hasattr(model, "mlp_head")
    with torch.no_grad():
        out = model(0.1 * torch.randn(2, 163840))
    assert out.framewise.shape == (2, 101, 3) and out.clipwise.shape == (2, 3) and out.logits.shape == (2, 3)
    assert torch.allclose(out.clipwise, torch.sigmoid(out.logits))
    assert torch.allclose(out.logits, torch.logit(out.framewise.double()).mean(dim=1).float(), atol=1e-4)
    assert model.steps_for(163840) == 101 and model.step_seconds_for(163840) == pytest.approx(0.1)


def test_sdpa_and_explicit_attention_agree(hf: AST, hf_io) -> None:
    features = torch.from_numpy(hf_io["features_10s"])
    with torch.no_grad():
        fused = hf.forward_from_features(features).logits
        for block in hf.blocks:
            block.attn.fused_attn = False
        try:
            explicit = hf.forward_from_features(features).logits
        finally:
            for block in hf.blocks:
                block.attn.fused_attn = True
    assert torch.allclose(fused, explicit, rtol=0, atol=1e-5)
    np.testing.assert_allclose(explicit.numpy(), hf_io["logits_10s"], rtol=0, atol=1e-5)


def test_window_limits(official: AST) -> None:
    assert official.native_window_samples == 163840 and official.sample_rate == 16000
    assert official.steps_for(163840) == 1 and official.steps_for(400) == 1
    assert official.steps_for(400 + 1023 * 160) == 1
    with pytest.raises(ValueError, match="1025 fbank frames, more than target_length 1024"):
        official.steps_for(400 + 1024 * 160)
    with pytest.raises(ValueError, match="at least 400 samples"):
        official.steps_for(399)
    with pytest.raises(ValueError, match=r"expects features \[B, 1024, 128\]"):
        official.forward_from_features(torch.zeros(1, 512, 128))


# ------------------------------------------------------------------------------------------------ positional grid


def test_pos_grid_follows_the_official_rules() -> None:
    torch.manual_seed(0)
    pos = torch.randn(1, 2 + 12 * 101, 8)
    grid = pos[:, 2:].transpose(1, 2).reshape(1, 8, 12, 101)
    # AudioSet fine-tuning to a shorter input: cut columns from 50 - t // 2
    cut = resize_pos_grid(pos, (12, 101), (12, 50))
    assert torch.equal(cut[:, :2], pos[:, :2])
    assert torch.equal(cut[:, 2:].transpose(1, 2).reshape(1, 8, 12, 50), grid[..., 25:75])
    # longer input: bilinear interpolation (align_corners=False)
    longer = resize_pos_grid(pos, (12, 101), (12, 150))
    expected = F.interpolate(grid, size=(12, 150), mode="bilinear")
    assert torch.allclose(longer[:, 2:].transpose(1, 2).reshape(1, 8, 12, 150), expected)
    # ImageNet 24x24 DeiT grid -> 12 x 101: frequency cut from the middle (rows 6..17), time interpolated
    deit = torch.randn(1, 2 + 24 * 24, 8)
    square = deit[:, 2:].transpose(1, 2).reshape(1, 8, 24, 24)
    adapted = resize_pos_grid(deit, (24, 24), (12, 101))
    expected = F.interpolate(square, size=(24, 101), mode="bilinear")[:, :, 6:18]
    assert torch.allclose(adapted[:, 2:].transpose(1, 2).reshape(1, 8, 12, 101), expected)


def test_loading_with_another_target_length_cuts_the_grid(official: AST, official_io) -> None:
    short = load_checkpoint(OFFICIAL, target_length=512)
    assert short.config.t_dim == 50 and short.source["pos_embed_resized"] == {"from": [12, 101], "to": [12, 50]}
    grid = official.pos_embed[:, 2:].reshape(1, 12, 101, -1)
    assert torch.equal(short.pos_embed[:, 2:].reshape(1, 12, 50, -1), grid[:, :, 25:75])
    with torch.no_grad():
        out = short(torch.from_numpy(official_io["wave_10s"][: 512 * 160])[None])
    assert out.logits.shape == (1, 5) and torch.isfinite(out.logits).all()
    assert short.native_window_samples == 512 * 160


# ------------------------------------------------------------------------------------------------ full-size layouts


def test_full_size_official_keys_shapes_and_parameter_counts() -> None:
    reference = json.loads((FIXTURES / "keys_official_base384.json").read_text())
    with torch.device("meta"):
        model = AST(ASTConfig())
    ours = ast_official_state_dict(model)
    expected = {entry["key"]: entry["shape"] for entry in reference["keys"]}
    assert {k: list(v.shape) for k, v in ours.items()} == expected
    assert sum(v.numel() for v in ours.values()) == reference["n_params_total"] == 88_132_063
    assert sum(p.numel() for p in model.parameters()) == reference["n_params_used_in_forward"] == 86_594_063


@pytest.mark.parametrize("naming, field", [("legacy", "hub_legacy_keys"), ("v5", "transformers5_in_memory_keys")])
def test_full_size_transformers_keys_and_shapes(naming: str, field: str) -> None:
    reference = json.loads((FIXTURES / "keys_hf_base.json").read_text())
    with torch.device("meta"):
        model = AST(ASTConfig())
    ours = ast_transformers_state_dict(model, naming=naming)
    assert {k: list(v.shape) for k, v in ours.items()} == {e["key"]: e["shape"] for e in reference[field]}
    assert sum(v.numel() for v in ours.values()) == reference["n_params"] == 86_594_063


def test_key_mapping_matches_the_reference_mapping() -> None:
    """Build tensors tagged by official key (and qkv row block); both converters must land them in the same place."""
    mapping = json.loads((FIXTURES / "key_mapping_official_to_hf.json").read_text())
    official, legacy, v5 = {}, {}, {}
    for i, row in enumerate(mapping):
        official.setdefault(row["official"], torch.full(row["official_shape"], float(i)))
        if row["hf_legacy"] is None:
            continue
        value = official[row["official"]]
        note = row.get("note", "")
        if "rows [" in note:
            part = int(note.split("rows [")[1][0])
            value = value.chunk(3, dim=0)[part]
        legacy[row["hf_legacy"]] = value
        v5[row["hf_v5"]] = value
    ours = {k: v for k, v in strip_ast_official(official).items() if not k.startswith("head")}
    for converted in (transformers_to_streamdet(legacy), transformers_to_streamdet(v5)):
        assert set(converted) == set(ours)
        for key in ours:
            assert torch.equal(converted[key], ours[key]), key


def test_transformers_round_trip_of_the_official_tiny(official: AST) -> None:
    for naming in ("legacy", "v5"):
        back = transformers_to_streamdet(ast_transformers_state_dict(official, naming))
        own = official.state_dict()
        assert set(back) == set(own) and all(torch.equal(back[k], own[k]) for k in own)
