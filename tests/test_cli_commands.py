"""`streamdet --help`, `streamdet models list|show` through the installed entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streamdet.session import BUNDLED_MODEL


def test_help_lists_every_command_and_their_options(cli) -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("file", "listen", "devices", "models", "eval"):
        assert command in result.stdout
    for command, options in [("file", ["--format", "--output", "--plot", "--threshold", "--thresholds",
                                       "--lookahead", "--device"]),
                             ("listen", ["--device", "--duration", "--format", "--model"]),
                             ("models", ["list", "show"])]:
        sub = cli(command, "--help", env={**os.environ, "COLUMNS": "200"})
        assert sub.returncode == 0, sub.stderr
        for option in options:
            assert option in sub.stdout, (command, option)


def test_no_arguments_is_a_usage_error(cli) -> None:
    assert cli("file").returncode == 2
    assert cli("listen", "--format", "xml").returncode == 2


def test_models_show_reports_the_contract(cli, band_model: Path) -> None:
    result = cli("models", "show", band_model, "--format", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["valid"] and info["error"] is None
    assert info["labels"] == ["low", "mid", "high"] and info["sample_rate"] == 16000
    assert info["window_samples"] == 16000 and info["window_seconds"] == 1.0
    assert info["step_seconds"] == pytest.approx(0.05) and info["steps_per_window"] == 20
    assert info["precision"] == "fp32" and info["output_activation"] == "sigmoid"
    assert info["thresholds"] == {k: [0.5, 0.3] for k in ("low", "mid", "high")}
    assert info["thresholds_source"] == "runtime default"
    assert info["inputs"] == [{"name": "waveform", "type": "tensor(float)", "shape": ["batch", 16000]}]
    assert [(o["name"], o["shape"]) for o in info["outputs"]] == [("framewise", ["batch", 20, 3]),
                                                                  ("clipwise", ["batch", 3])]
    assert info["provenance"]["source"] == "tests/onnx_test_model.py"
    assert len(info["sha256"]) == 64
    table = cli("models", "show", band_model)
    assert table.returncode == 0
    for text in ("low, mid, high", "16000 Hz", "1 s (16000 samples)", "20 steps per window", "fp32",
                 "on 0.5 / off 0.3", "waveform", "framewise", "provenance"):
        assert text in table.stdout, text


def test_models_show_bad_metadata_and_missing_files(cli, tmp_path: Path) -> None:
    from onnx_test_model import build_band_model

    broken = build_band_model(tmp_path / "broken.onnx", drop_props=["sample_rate"])
    result = cli("models", "show", broken)
    assert result.returncode == 1 and "sample_rate: missing" in result.stderr
    assert "waveform" in result.stdout  # what can be read is still shown
    not_onnx = tmp_path / "x.onnx"
    not_onnx.write_text("hello")
    result = cli("models", "show", not_onnx)
    assert result.returncode == 1 and "not a loadable ONNX model" in result.stderr
    result = cli("models", "show", tmp_path / "missing.onnx")
    assert result.returncode == 2 and "missing.onnx" in result.stderr


def test_models_list(cli) -> None:
    for args in (["models"], ["models", "list"]):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        if BUNDLED_MODEL.exists():
            assert "alerts (default)" in result.stdout
        else:
            assert "no bundled models installed" in result.stderr
    listed = json.loads(cli("models", "list", "--format", "json").stdout)
    assert [m["name"] for m in listed] == sorted(p.stem for p in BUNDLED_MODEL.parent.glob("*.onnx"))
    if BUNDLED_MODEL.exists():
        alerts = next(m for m in listed if m["name"] == "alerts")
        assert alerts["valid"] and alerts["default"] and "speech" in alerts["labels"]
