"""`streamdet --help`, `streamdet models list|show` through the installed entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from onnx_test_model import build_band_model

from streamdet.session import BUNDLED_MODEL


def test_help_lists_every_command_and_their_options(cli) -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("file", "listen", "devices", "models", "eval", "export", "train", "bench"):
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
    assert info["thresholds_source"] == "runtime default" and info["postprocess"] == {}
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
    assert "post-processing" not in table.stdout


def test_models_show_reports_per_class_post_processing(cli, tmp_path: Path) -> None:
    post = {"low": {"min_duration": 0.25, "min_gap": 1.0}}
    path = build_band_model(tmp_path / "post.onnx", props={"postprocess": json.dumps(post)})
    info = json.loads(cli("models", "show", path, "--format", "json").stdout)
    assert info["postprocess"] == post
    table = cli("models", "show", path)
    assert "post-processing" in table.stdout and "low 0.25/1" in table.stdout


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
        assert "alerts (default)" in result.stdout
    listed = json.loads(cli("models", "list", "--format", "json").stdout)
    assert [m["name"] for m in listed] == sorted(p.stem for p in BUNDLED_MODEL.parent.glob("*.onnx"))
    alerts = next(m for m in listed if m["name"] == "alerts")
    assert alerts["valid"] and alerts["default"] and "speech" in alerts["labels"]


def test_bundled_model_follows_design_section_7(cli) -> None:
    """The default model: the seven `alerts` classes, at most 15 MB, per-class thresholds tuned into its
    metadata, and its recipe and evaluation figures in its provenance."""
    assert BUNDLED_MODEL.stat().st_size <= 15_000_000
    info = json.loads(cli("models", "show", "alerts", "--format", "json").stdout)
    assert info["valid"] and info["model_type"] == "htsat"
    labels = ["alarm", "siren", "phone_ring", "doorbell", "knock", "car_horn", "speech"]
    assert info["labels"] == labels and info["thresholds_source"] == "model"
    assert set(info["thresholds"]) == set(labels)
    assert all(0 < off <= on < 1 for on, off in info["thresholds"].values())
    prov = info["provenance"]
    assert prov["recipe"] == "streamdet train --recipe alerts"
    test = prov["evaluation"]["test"]
    assert {"event_f1_macro", "segment_f1_macro", "per_class"} <= set(test)
    assert 0 <= test["event_f1_macro"] <= 1 and 0 <= test["segment_f1_macro"] <= 1


def test_default_command_runs_the_bundled_model_on_the_bundled_example(cli) -> None:
    """The README's quick start: `streamdet file streamdet/bundled/example.wav` with no other option."""
    example = BUNDLED_MODEL.parent / "example.wav"
    result = cli("file", example, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    assert "model alerts.onnx: 7 classes" in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(e["file"] == str(example) and 0 <= e["onset"] < e["offset"] <= 20.0 for e in events)
    assert events, "no event in the example clip"
