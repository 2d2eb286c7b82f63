"""Hostile model metadata and option values (issue 18, item 5 and the metadata parts of item 10): non-finite,
overflowing and out-of-range numbers, empty, multi-line and megabyte labels, extra threshold elements and
booleans where numbers belong are a ModelMetadataError naming the field (and, from the CLI, the model), never a
traceback; ``--min-duration/--min-gap/--median-filter inf`` are usage errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from onnx_test_model import build_band_model, test_model_metadata

from streamdet.model_metadata import ModelMetadata, ModelMetadataError

BASE = test_model_metadata().to_props()

BAD = [
    ("sample_rate", "inf", "sample_rate: must be a finite number"),
    ("sample_rate", "1e400", "sample_rate: must be a finite number"),
    ("sample_rate", "nan", "sample_rate: must be a finite number"),
    ("sample_rate", "1e300", "sample_rate: must be a whole number from 1 to"),
    ("window_samples", "inf", "window_samples: must be a finite number"),
    ("window_samples", "-1e400", "window_samples: must be a finite number"),
    ("window_samples", "nan", "window_samples: must be a finite number"),
    ("window_samples", "1e30", "window_samples: must be a whole number from 1 to"),
    ("step_seconds", "nan", "step_seconds: must be a finite number"),
    ("step_seconds", "1e-300", "step_seconds: 1e-300 is shorter than one sample"),
    ("postprocess", '{"low": {"min_duration": 1e308}}', "postprocess: 'low' min_duration must be a number"),
    ("postprocess", '{"low": {"min_gap": Infinity}}', "postprocess: 'low' min_gap must be a number"),
    ("postprocess", '{"low": {"min_duration": NaN}}', "postprocess: 'low' min_duration must be a number"),
    ("postprocess", '{"low": {"min_duration": true}}', "postprocess: 'low' min_duration must be a number"),
    ("postprocess", '{"low": {"min_gap": 1' + "0" * 5000 + "}}", "postprocess: not valid JSON"),
    ("thresholds", '{"low": [0.6, 0.4, 0.2]}', "thresholds: expected {label: [on, off]}, 'low' has"),
    ("thresholds", '{"low": [true, false]}', "thresholds: expected {label: [on, off]}, 'low' has"),
    ("thresholds", '{"low": [NaN, 0.1]}', "thresholds: 'low' needs 0 <= off <= on <= 1"),
    ("labels", '["", "mid", "high"]', "labels: label 1: must be a non-empty string"),
    ("labels", '["low", "two\\nlines", "high"]', "labels: label 2: 'two\\nlines' has control characters"),
    ("labels", json.dumps(["low", "mid", "x" * 1_000_000]), "labels: label 3: 1000000 characters, more than 200"),
    ("labels", '["low", "mid", " high"]', "labels: label 3: ' high' has control characters, line breaks or surr"),
    ("labels", "[" * 100_000, "labels: JSON nested too deeply"),
    ("model_type", "x" * 100_000, "model_type: 100000 characters"),
    ("model_type", "htsat\x1b[2J", "model_type: 'htsat\\x1b[2J' has control characters"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD)
def test_bad_metadata_is_refused_naming_the_field(field: str, value: str, message: str) -> None:
    with pytest.raises(ModelMetadataError, match="^" + re.escape(message)) as info:
        ModelMetadata.from_props({**BASE, field: value})
    assert len(str(info.value)) < 300  # a megabyte field is quoted cut short


def test_numbers_in_range_and_numpy_scalars_are_accepted() -> None:
    meta = ModelMetadata.from_props({**BASE, "postprocess": '{"low": {"min_duration": 86400, "min_gap": 0.25}}',
                                     "thresholds": '{"low": [1, 0]}'})
    assert meta.postprocess == {"low": {"min_duration": 86400, "min_gap": 0.25}}
    direct = ModelMetadata("x", ("a",), np.int64(16000), np.int64(16000), np.float32(0.05))
    assert direct.steps_per_window == 20


@pytest.mark.parametrize(("shapes", "message"), [
    ((["batch", 16000], ["batch", 20, 3], []), "clipwise: output must be 2-D"),  # found by the fuzzer
    ((["batch", 16000], ["batch", 20, 3], ["batch", 3, 1]), "clipwise: output must be 2-D"),
    ((["batch"], ["batch", 20, 3], ["batch", 3]), "window_samples: input 'waveform' must be 2-D"),
    ((["batch", 16000], [], ["batch", 3]), "framewise: output must be 3-D"),
])
def test_graph_shapes_of_the_wrong_rank_are_refused(shapes: tuple, message: str) -> None:
    with pytest.raises(ModelMetadataError, match="^" + re.escape(message)):
        test_model_metadata().check_shapes(*shapes)


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wav") / "x.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    return path


@pytest.mark.parametrize(("field", "value", "message"), [
    ("sample_rate", "inf", "sample_rate: must be a finite number, got 'inf'"),
    ("window_samples", "1e400", "window_samples: must be a finite number, got '1e400'"),
    ("sample_rate", "nan", "sample_rate: must be a finite number, got 'nan'"),
    ("postprocess", '{"low": {"min_duration": 1e308}}', "postprocess: 'low' min_duration must be a number"),
])
def test_cli_names_the_model_and_the_field(cli, wav: Path, tmp_path: Path, field: str, value: str,
                                           message: str) -> None:
    model = build_band_model(tmp_path / "bad.onnx", props={field: value})
    shown = cli("models", "show", model)
    assert shown.returncode == 1
    assert f"error: {model}: not a valid streamdet model: {message}" in shown.stderr
    run = cli("file", wav, "--model", model)
    assert run.returncode == 2
    assert f"error: {model}: not a streamdet model: {message}" in run.stderr
    assert "Traceback" not in shown.stderr + run.stderr


@pytest.mark.parametrize("option", ["--min-duration", "--min-gap", "--median-filter"])
@pytest.mark.parametrize("value", ["inf", "nan", "1e300"])
def test_non_finite_or_absurd_option_seconds_are_usage_errors(cli, band_model: Path, wav: Path, option: str,
                                                              value: str) -> None:
    result = cli("file", wav, "--model", band_model, option, value)
    assert result.returncode == 2, result.stderr
    assert f"error: {option} must be a number of seconds from 0 to" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_absurd_thread_count_is_a_usage_error(cli, band_model: Path, wav: Path) -> None:
    result = cli("file", wav, "--model", band_model, "--threads", "99999999999")
    assert result.returncode == 2 and "--threads must be at least 1 and at most 4096" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--min-duration", "inf", "--min-duration must be a number of seconds from 0 to 86400"),
    ("--min-gap", "1e300", "--min-gap must be a number of seconds from 0 to 86400"),
    ("--median-filter", "nan", "--median-filter must be a number of seconds from 0 to 10"),
    ("--threads", "99999999999", "--threads must be at least 1 and at most 4096"),
])
def test_listen_checks_the_same_option_ranges(cli, band_model: Path, option: str, value: str, message: str) -> None:
    """The detection options are one group (streamdet/cli/options.py): listen refuses what file refuses, before
    any audio device is opened."""
    result = cli("listen", "--model", band_model, "--duration", "1", option, value)
    assert result.returncode == 2 and f"error: {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
