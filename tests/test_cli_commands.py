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
    for command in ("file", "listen", "devices", "models", "eval", "export", "train", "bench", "batch", "serve"):
        assert command in result.stdout
    for command, options in [("file", ["--format", "--output", "--plot", "--threshold", "--thresholds",
                                       "--lookahead", "--device"]),
                             ("listen", ["--input", "--device", "--duration", "--format", "--model", "--threshold",
                                         "--thresholds", "--median-filter", "--min-duration", "--min-gap",
                                         "--threads", "--hop", "--lookahead"]),
                             ("models", ["list", "show"]),
                             ("batch", ["--output", "--ray", "--format", "--workers", "--threads-per-worker",
                                        "--resume", "--model", "--threshold", "--hop", "--min-gap"]),
                             ("serve", ["--ray", "--replicas"])]:
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


def test_models_show_and_file_use_one_validation(cli, band_model: Path, tmp_path: Path) -> None:
    """A graph with an extra input is refused by `file --model` and called invalid by `models show`, for the same
    reason: both run streamdet.model_metadata.validate_model."""
    import onnx
    import soundfile as sf
    from onnx import TensorProto, helper
    from onnx_test_model import scene

    model = onnx.load(str(band_model))
    model.graph.input.append(helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1]))
    extra = tmp_path / "extra_input.onnx"
    onnx.save(model, str(extra))
    show = cli("models", "show", extra, "--format", "json")
    info = json.loads(show.stdout)
    assert show.returncode == 1 and not info["valid"]
    assert "exactly one input 'waveform'" in info["error"] and "gain" in info["error"]
    wav = tmp_path / "clip.wav"
    sf.write(wav, scene([("mid", 0.2, 0.6)], 1.0), 16000)
    run = cli("file", wav, "--model", extra)
    assert run.returncode == 2 and info["error"] in run.stderr, run.stderr


def test_models_show_prints_model_text_as_text_and_sizes_in_mb(cli, tmp_path: Path) -> None:
    """Brackets in the model's metadata are printed as they are (rich would read "[batch, frames]" as markup and
    drop it); the size is in decimal units, the same as the bytes in --json."""
    frontend = {"type": "logmel", "output_layout": "[batch, frames, n_mels]", "note": "[/] [bold]x"}
    path = build_band_model(tmp_path / "brackets.onnx", props={"frontend": json.dumps(frontend)})
    table = cli("models", "show", path)
    assert table.returncode == 0, table.stderr
    flat = " ".join(table.stdout.split())
    assert '"output_layout": "[batch, frames, n_mels]"' in flat and '"note": "[/] [bold]x"' in flat
    size = json.loads(cli("models", "show", path, "--format", "json").stdout)["file_bytes"]
    assert f"{size / 1000:.1f} kB" in table.stdout
    listing = cli("models")
    mb = BUNDLED_MODEL.stat().st_size / 1e6
    assert f"{mb:.1f} MB" in listing.stdout, listing.stdout
