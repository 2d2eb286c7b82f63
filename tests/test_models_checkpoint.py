"""Checkpoint loading: format detection, strictness, errors that name the file and the problem, the official
release quirks, and the round trip of streamdet's own format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from streamdet.models import (
    AST,
    HTSAT,
    ASTConfig,
    ASTTokenSemantic,
    CheckpointError,
    HTSATConfig,
    ast_official_state_dict,
    detect_format,
    htsat_official_state_dict,
    load_checkpoint,
    save_checkpoint,
)

from streamdet.labels import audioset_labels

FIXTURES = Path(__file__).parent / "fixtures"
HTSAT_CKPT = FIXTURES / "htsat" / "tiny_state_dict.pt"
AST_PTH = FIXTURES / "ast" / "official_tiny" / "ast_tiny224_depth1_f10_t10_tdim1024_label5.pth"
HF_TINY = FIXTURES / "ast" / "hf_tiny"


def _htsat_raw() -> dict:
    return torch.load(HTSAT_CKPT, map_location="cpu", weights_only=True)


def _wave(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(1, int(seconds * sample_rate), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ detection


def test_formats_are_detected() -> None:
    assert detect_format(_htsat_raw(), HTSAT_CKPT) == "htsat_official"
    assert detect_format(torch.load(AST_PTH, weights_only=True), AST_PTH) == "ast_official"
    assert load_checkpoint(HTSAT_CKPT).source["format"] == "htsat_official"
    assert load_checkpoint(AST_PTH).source["format"] == "ast_official"
    source = load_checkpoint(HF_TINY).source
    assert source["format"] == "ast_transformers" and len(source["sha256"]) == 64


def test_source_records_file_hash_and_ignored_keys() -> None:
    import hashlib

    model = load_checkpoint(HTSAT_CKPT)
    assert model.source["file"] == "tiny_state_dict.pt"
    assert model.source["sha256"] == hashlib.sha256(HTSAT_CKPT.read_bytes()).hexdigest()
    assert model.source["ignored_keys"] == ["head.weight", "head.bias"]
    ast = load_checkpoint(AST_PTH)
    heads = [f"module.v.{h}.{p}" for h in ("head", "head_dist") for p in ("weight", "bias")]
    assert ast.source["ignored_keys"] == heads


# ------------------------------------------------------------------------------------------------ errors


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nope\.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint" * 20, b"PK\x03\x04broken zip"])
def test_unreadable_file_is_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"broken\.pth: cannot read as a PyTorch checkpoint"):
        load_checkpoint(path)


def test_unknown_format_is_named(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"resnet\.pth: unknown checkpoint format; first keys: \['conv1\.weight'"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_checkpoint(path)


def test_transformers_weights_without_config_and_incomplete_folders(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    bare = tmp_path / "weights.pth"
    torch.save(load_file(str(HF_TINY / "model.safetensors")), bare)
    with pytest.raises(CheckpointError, match=r"weights.pth: transformers AST weights need their config.json"):
        load_checkpoint(bare)
    folder = tmp_path / "half"
    folder.mkdir()
    shutil.copy(HF_TINY / "config.json", folder)
    with pytest.raises(CheckpointError, match=r"half: a checkpoint folder must hold .* found \['config.json'\]"):
        load_checkpoint(folder)
    shutil.copy(HF_TINY / "model.safetensors", folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json: unreadable JSON"):
        load_checkpoint(folder)


def test_strict_loading_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    raw = _htsat_raw()
    state = raw["state_dict"]
    state.pop("sed_model.layers.1.blocks.0.mlp.fc2.bias")
    state.pop("sed_model.norm.weight")
    state["sed_model.extra_layer.weight"] = torch.zeros(3)
    path = tmp_path / "edited.ckpt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith("edited.ckpt: the checkpoint does not match the HTSAT architecture")
    assert "missing keys (2): layers.1.blocks.0.mlp.fc2.bias, norm.weight" in message
    assert "unexpected keys (1): extra_layer.weight" in message


def test_strict_loading_reports_shape_mismatches(tmp_path: Path) -> None:
    state = dict(torch.load(AST_PTH, weights_only=True))
    state["module.v.norm.bias"] = torch.zeros(7)
    path = tmp_path / "bad_shape.pth"
    torch.save(state, path)
    expected = r"shape mismatches \(1\): norm.bias: checkpoint \(7,\) vs model \(192,\)"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_prefixless_htsat_state_dict_without_stripping_is_not_silently_empty(tmp_path: Path) -> None:
    # issue #11 upstream: loading with strict=False and the wrong prefix loads nothing; here every key must land
    raw = _htsat_raw()
    wrapped = {"state_dict": {"model." + k: v for k, v in raw["state_dict"].items()}}
    path = tmp_path / "wrong_prefix.ckpt"
    torch.save(wrapped, path)
    with pytest.raises(CheckpointError, match=r"wrong_prefix.ckpt"):
        load_checkpoint(path)


def test_corrupted_frontend_tensors_are_detected(tmp_path: Path) -> None:
    raw = _htsat_raw()
    raw["state_dict"]["sed_model.logmel_extractor.melW"] *= 1.01
    path = tmp_path / "melw.ckpt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"melw.ckpt: stored mel filterbank melW differs .*fmin="):
        load_checkpoint(path)
    raw = _htsat_raw()
    raw["state_dict"]["sed_model.layers.0.blocks.1.attn_mask"][0, 0, 1] = -100.0
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"layers.0.blocks.1.attn_mask"):
        load_checkpoint(path)


def test_front_end_overrides_are_checked_against_the_stored_melw() -> None:
    with pytest.raises(CheckpointError, match="melW"):
        load_checkpoint(HTSAT_CKPT, fmax=8000.0)


def test_float32_index_buffers_of_the_weight_averaged_release_load(tmp_path: Path) -> None:
    raw = _htsat_raw()
    raw["state_dict"] = {k: v.float() for k, v in raw["state_dict"].items()}  # like main.py's weight_average()
    path = tmp_path / "averaged.ckpt"
    torch.save(raw, path)
    model = load_checkpoint(path)
    reference = load_checkpoint(HTSAT_CKPT)
    wave = _wave(10, 32000)
    with torch.no_grad():
        assert torch.equal(model(wave).framewise, reference(wave).framewise)
    assert model.bn0.num_batches_tracked.dtype == torch.int64 and model.bn0.num_batches_tracked.item() == 12345


def test_overrides_are_validated() -> None:
    with pytest.raises(TypeError, match=r"unknown override\(s\) \['colour'\]"):
        load_checkpoint(HTSAT_CKPT, colour="red")
    with pytest.raises(TypeError, match=r"\['target_length'\] do not apply to a HTSATConfig"):
        load_checkpoint(HTSAT_CKPT, target_length=512)
    with pytest.raises(ValueError, match="got 2 labels for a model with 5 classes"):
        load_checkpoint(HTSAT_CKPT, labels=["a", "b"])
    labels = ["alarm", "siren", "phone_ring", "doorbell", "knock"]
    assert load_checkpoint(HTSAT_CKPT, labels=labels).labels == labels


def test_pickled_objects_need_allow_pickle(tmp_path: Path) -> None:
    path = tmp_path / "lightning_style.ckpt"
    payload = _htsat_raw()
    payload["hyper_parameters"] = _Config()
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"lightning_style.ckpt: .*allow_pickle=True"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_pickle=True).config.embed_dim == 16


class _Config:
    """Stand-in for the config objects that training frameworks pickle into checkpoints."""

    lr = 1e-3


# ------------------------------------------------------------------------------------------------ labels


def test_527_class_models_get_audioset_labels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = AST(ASTConfig(embed_dim=32, depth=1, num_heads=2, mlp_dim=64))
    path = tmp_path / "as527.pth"
    torch.save(ast_official_state_dict(model), path)
    loaded = load_checkpoint(path)
    assert loaded.labels == list(audioset_labels()) and loaded.labels[0] == "Speech"
    assert loaded.config.num_heads == 1  # DeiT convention, 64-dim heads (32 // 64 -> at least 1)
    assert load_checkpoint(path, num_heads=2).config.num_heads == 2


# ------------------------------------------------------------------------------------------------ round trips


def test_htsat_official_state_dict_round_trips(tmp_path: Path) -> None:
    model = load_checkpoint(HTSAT_CKPT)
    exported = htsat_official_state_dict(model)
    original = _htsat_raw()["state_dict"]
    assert set(exported) == set(original)
    for key, value in original.items():
        if not key.startswith("sed_model.head."):
            assert torch.equal(exported[key].to(value.dtype), value), key
    path = tmp_path / "reexported.ckpt"
    torch.save({"state_dict": exported}, path)
    again = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True))


@pytest.mark.parametrize("kind", ["htsat", "ast_official", "ast_hf", "ast_tscam"])
def test_streamdet_format_round_trip(tmp_path: Path, kind: str) -> None:
    if kind == "htsat":
        model, wave = load_checkpoint(HTSAT_CKPT, labels=list("abcde")), _wave(10, 32000)
    elif kind == "ast_official":
        model, wave = load_checkpoint(AST_PTH), _wave(10.24, 16000)
    elif kind == "ast_hf":
        model, wave = load_checkpoint(HF_TINY), _wave(4, 16000)
    else:
        model, wave = load_checkpoint(AST_PTH, model_type="ast_tscam"), _wave(10.24, 16000)
    path = save_checkpoint(model, tmp_path / f"{kind}.pt", recipe="unit test", metrics={"mAP": 0.5})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "streamdet-checkpoint" and raw["model_type"] == model.model_type
    assert raw["frontend"] == model.frontend_config() and raw["labels"] == model.labels
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model) and loaded.config == model.config and loaded.labels == model.labels
    assert loaded.source["format"] == "streamdet"
    assert loaded.provenance["recipe"] == "unit test" and loaded.provenance["metrics"] == {"mAP": 0.5}
    assert loaded.provenance["converted_from"]["sha256"] == model.source["sha256"]
    with torch.no_grad():
        a, b = model(wave), loaded(wave)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    json.dumps(raw["config"]), json.dumps(raw["provenance"])  # plain data


def test_own_format_rejects_tampering(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = HTSAT(HTSATConfig(num_classes=3, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)))
    path = save_checkpoint(model, tmp_path / "own.pt")
    raw = torch.load(path, weights_only=True)
    raw["frontend"]["fmin"] = 0.0
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"own.pt: stored front-end"):
        load_checkpoint(path)
    raw["format_version"] = 99
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        load_checkpoint(path)


def test_token_semantic_head_on_an_official_ast_backbone() -> None:
    model = load_checkpoint(AST_PTH, model_type="ast_tscam")
    assert isinstance(model, ASTTokenSemantic)
    assert model.source["initialised_keys"] == ["tscam_conv.bias", "tscam_conv.weight"]
    assert model.source["dropped_keys"] == [f"mlp_head.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]
    reference = load_checkpoint(AST_PTH)
    assert torch.equal(model.pos_embed, reference.pos_embed)
    with pytest.raises(CheckpointError, match="cannot be loaded as model_type='htsat'"):
        load_checkpoint(AST_PTH, model_type="htsat")


def test_loaded_models_are_in_eval_mode_and_deterministic() -> None:
    model = load_checkpoint(HTSAT_CKPT)
    assert not model.training and not any(m.training for m in model.modules())
    wave = _wave(3, 32000)
    with torch.no_grad():
        assert torch.equal(model(wave).clipwise, model(wave).clipwise)
    assert np.isfinite(model(wave).framewise.detach().numpy()).all()


@pytest.mark.parametrize("path_and_type", [(HTSAT_CKPT, "htsat"), (AST_PTH, "ast"), (HF_TINY, "ast_tscam")])
def test_registered_models_meet_the_model_contract(path_and_type: tuple[Path, str]) -> None:
    """Every registered type: frame logits in the output (the loop's framewise loss; their sigmoid is framewise),
    the no-weight-decay parameters declared by the model (biases, norms, position tables, tokens), the export
    contract, and build_model / the registry agree on the class."""
    from streamdet.models import MODEL_TYPES, StreamdetModel, build_model, contract_gaps

    path, model_type = path_and_type
    model = load_checkpoint(path, model_type=model_type) if model_type == "ast_tscam" else load_checkpoint(path)
    assert type(model) is MODEL_TYPES[model_type].cls and model.model_type == model_type
    assert isinstance(model, StreamdetModel) and contract_gaps(model) == []
    with torch.no_grad():
        out = model(_wave(model.native_window_samples / model.sample_rate, model.sample_rate))
    assert out.frame_logits is not None and out.frame_logits.shape == out.framewise.shape
    torch.testing.assert_close(torch.sigmoid(out.frame_logits), out.framewise)
    exempt = model.no_weight_decay()
    names = dict(model.named_parameters())
    assert all(names[n].ndim <= 1 or any(k in n for k in ("relative_position_bias_table", "token", "pos_embed"))
               for n in exempt)
    assert {n for n, p in names.items() if p.ndim <= 1} <= exempt
    assert any("weight" in n and names[n].ndim >= 2 for n in names if n not in exempt)  # the rest decays
    fresh = build_model(model_type, labels=list(model.labels), **vars(model.config))
    assert type(fresh) is type(model) and set(fresh.state_dict()) == set(model.state_dict())
    with pytest.raises(ValueError, match="unknown model_type 'nope'"):
        build_model("nope")
