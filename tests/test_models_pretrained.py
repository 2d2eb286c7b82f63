"""ImageNet initialisation from local DeiT / Swin weight files (synthetic files with the real key layouts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from streamdet.models import ASTConfig, ASTTokenSemantic, CheckpointError, HTSATConfig, ast_from_deit, htsat_from_swin


def _deit_tiny_224(num_blocks: int = 2, distilled: bool = True) -> dict[str, torch.Tensor]:
    """A state dict with the layout of timm's ``deit_tiny_distilled_patch16_224`` (14 x 14 grid, 192 dims)."""
    g = torch.Generator().manual_seed(0)
    D, prefix = 192, 2 if distilled else 1
    state = {
        "cls_token": torch.randn(1, 1, D, generator=g),
        "pos_embed": torch.randn(1, prefix + 14 * 14, D, generator=g),
        "patch_embed.proj.weight": torch.randn(D, 3, 16, 16, generator=g),
        "patch_embed.proj.bias": torch.randn(D, generator=g),
        "norm.weight": torch.randn(D, generator=g),
        "norm.bias": torch.randn(D, generator=g),
        "head.weight": torch.randn(1000, D, generator=g),
        "head.bias": torch.randn(1000, generator=g),
    }
    if distilled:
        state["dist_token"] = torch.randn(1, 1, D, generator=g)
        state["head_dist.weight"] = torch.randn(1000, D, generator=g)
        state["head_dist.bias"] = torch.randn(1000, generator=g)
    for i in range(num_blocks):
        for name, shape in [
            ("norm1.weight", (D,)), ("norm1.bias", (D,)), ("attn.qkv.weight", (3 * D, D)), ("attn.qkv.bias", (3 * D,)),
            ("attn.proj.weight", (D, D)), ("attn.proj.bias", (D,)), ("norm2.weight", (D,)), ("norm2.bias", (D,)),
            ("mlp.fc1.weight", (4 * D, D)), ("mlp.fc1.bias", (4 * D,)), ("mlp.fc2.weight", (D, 4 * D)),
            ("mlp.fc2.bias", (D,)),
        ]:
            state[f"blocks.{i}.{name}"] = torch.randn(*shape, generator=g)
    return state


def test_ast_from_deit_follows_the_official_adaptation(tmp_path: Path) -> None:
    deit = _deit_tiny_224()
    path = tmp_path / "deit_tiny.pth"
    torch.save({"model": deit}, path)  # the layout of Facebook's DeiT release
    model = ast_from_deit(path, ASTConfig(num_classes=7))
    assert model.training  # ready to train; switched to eval below for a deterministic forward
    c = model.config
    assert (c.embed_dim, c.depth, c.num_heads, c.mlp_dim, c.num_classes) == (192, 2, 3, 768, 7)
    # RGB patch kernel summed to one channel, stride (10, 10)
    assert torch.equal(model.patch_embed.proj.weight, deit["patch_embed.proj.weight"].sum(dim=1, keepdim=True))
    assert model.patch_embed.proj.stride == (10, 10)
    # positional grid 14 x 14 -> 12 x 101: time interpolated (bilinear), frequency cut from the middle (rows 1..12)
    square = deit["pos_embed"][:, 2:].transpose(1, 2).reshape(1, 192, 14, 14)
    expected = F.interpolate(square, size=(14, 101), mode="bilinear")[:, :, 1:13].reshape(1, 192, -1).transpose(1, 2)
    assert torch.allclose(model.pos_embed[:, 2:], expected)
    assert torch.equal(model.pos_embed[:, :2], deit["pos_embed"][:, :2])
    assert torch.equal(model.blocks[1].attn.qkv.weight, deit["blocks.1.attn.qkv.weight"])
    report = model.provenance["init"]
    assert sorted(report["dropped"]) == ["head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]
    assert report["initialised"] == ["mlp_head.0.bias", "mlp_head.0.weight", "mlp_head.1.bias", "mlp_head.1.weight"]
    with torch.no_grad():
        out = model.eval()(0.1 * torch.randn(2, 163840))
    assert out.clipwise.shape == (2, 7) and torch.isfinite(out.logits).all()


def test_ast_from_vit_without_distillation_and_token_semantic_head() -> None:
    vit = _deit_tiny_224(num_blocks=1, distilled=False)
    model = ast_from_deit(vit, ASTConfig(num_classes=3, target_length=512), token_semantic=True)
    assert isinstance(model, ASTTokenSemantic) and model.config.t_dim == 50
    assert torch.equal(model.dist_token, vit["cls_token"])
    assert torch.equal(model.pos_embed[:, 1], vit["pos_embed"][:, 0])
    assert "tscam_conv.weight" in model.provenance["init"]["initialised"]


def test_ast_from_deit_rejects_other_files() -> None:
    with pytest.raises(CheckpointError, match="not a ViT/DeiT state dict"):
        ast_from_deit({"conv1.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError, match="ImageNet weight file not found"):
        ast_from_deit("/nonexistent/deit.pth")


def _swin_like(config: HTSATConfig, window: int, timm_names: bool = False) -> dict[str, torch.Tensor]:
    """A Swin state dict with RGB patch conv, ImageNet head and the given window, built from HTS-AT shapes."""
    from streamdet.models import HTSAT

    torch.manual_seed(1)
    state = {k: torch.randn_like(v.float()) for k, v in HTSAT(config).state_dict().items()}
    for key in [k for k in state if k.startswith(("bn0.", "tscam_conv."))]:
        del state[key]
    D = config.embed_dim
    state["patch_embed.proj.weight"] = torch.randn(D, 3, 4, 4)
    state["head.weight"] = torch.randn(1000, config.num_features)
    state["head.bias"] = torch.randn(1000)
    for key in [k for k in state if k.endswith("relative_position_bias_table")]:
        state[key] = torch.randn((2 * window - 1) ** 2, state[key].shape[1])
        index_key = key.replace("relative_position_bias_table", "relative_position_index")
        state[index_key] = torch.zeros(window**2, window**2)
    if timm_names:
        state = {
            (f"layers.{int(k.split('.')[1]) + 1}." + k.split(".", 2)[2] if ".downsample." in k else k): v
            for k, v in state.items()
        }
        state["head.fc.weight"], state["head.fc.bias"] = state.pop("head.weight"), state.pop("head.bias")
    return state


def test_htsat_from_swin_averages_the_patch_kernel_and_drops_the_head(tmp_path: Path) -> None:
    config = HTSATConfig(num_classes=4, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2))
    swin = _swin_like(config, window=8)
    path = tmp_path / "swin_tiny_c24_patch4_window8_256.pth"
    torch.save({"model": swin}, path)
    model = htsat_from_swin(path, config)
    assert torch.equal(model.patch_embed.proj.weight, swin["patch_embed.proj.weight"].mean(dim=1, keepdim=True))
    assert torch.equal(model.layers[2].downsample.reduction.weight, swin["layers.2.downsample.reduction.weight"])
    table = model.layers[0].blocks[1].attn.relative_position_bias_table
    assert torch.equal(table, swin["layers.0.blocks.1.attn.relative_position_bias_table"])
    report = model.provenance["init"]
    assert "head.weight" in report["dropped"]
    assert {"tscam_conv.weight", "bn0.running_mean", "bn0.weight"} <= set(report["initialised"])
    with torch.no_grad():
        assert model.eval()(0.1 * torch.randn(1, 320000)).framewise.shape == (1, 32, 4)


def test_htsat_from_swin_reads_timm_names_and_resizes_window_7_tables() -> None:
    config = HTSATConfig(num_classes=2, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2))
    swin = _swin_like(config, window=7, timm_names=True)
    model = htsat_from_swin(swin, config)
    assert torch.equal(model.layers[0].downsample.reduction.weight, swin["layers.1.downsample.reduction.weight"])
    assert model.layers[1].blocks[0].attn.relative_position_bias_table.shape == (225, 1)
    assert any("resized bicubically" in entry for entry in model.provenance["init"]["adapted"])
    bad = _swin_like(HTSATConfig(num_classes=2, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(2, 2, 2, 2)), window=8)
    with pytest.raises(CheckpointError, match="2 heads in the file, 1 in the model"):
        htsat_from_swin(bad, config)
