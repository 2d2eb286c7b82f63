"""Bad inputs and bad models: clear errors naming the file or the metadata field; no torch at runtime."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from onnx_test_model import build_band_model, scene

import streamdet
from streamdet.audio_io import AudioFileError, NonFiniteSamplesWarning, read_blocks
from streamdet.model_metadata import ModelMetadataError
from streamdet.session import ModelLoadError

X = scene([("low", 1.0, 2.0)], 3.0)


def labels_times(events: list) -> list[tuple]:
    return [(e.label, e.onset, e.offset) for e in events]


def test_nan_and_inf_samples_are_zeroed_counted_and_warned(band_detector: streamdet.Detector) -> None:
    bad = X.copy()
    bad[[5, 17000, 30000]] = [np.nan, np.inf, -np.inf]
    clean = X.copy()
    clean[[5, 17000, 30000]] = 0.0
    s = band_detector.stream(16000, name="nan-mic")
    with pytest.warns(NonFiniteSamplesWarning, match="nan-mic: 2 NaN/inf"):
        s.push(bad[:20000])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per stream, counted always
        s.push(bad[20000:])
    s.close()
    assert s.nonfinite_samples == 3
    ref = band_detector.stream(16000)
    ref.push(clean)
    ref.close()
    assert labels_times(s.events) == labels_times(ref.events) == [("low", 1.0, 2.0)]


def test_nan_in_a_file_warns_with_the_file_name(band_detector: streamdet.Detector, tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    bad = X.copy()
    bad[100] = np.nan
    sf.write(path, bad, 16000, subtype="FLOAT")
    with pytest.warns(NonFiniteSamplesWarning, match=r"nan\.wav: 1 NaN/inf"):
        events = band_detector.detect_file(path)
    assert labels_times(events) == [("low", 1.0, 2.0)]


def test_empty_unreadable_and_missing_files_raise_audio_file_error(
    band_detector: streamdet.Detector, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    cases = {empty: "contains no audio", garbage: "cannot decode", tmp_path / "missing.flac": "no such file",
             tmp_path: "directory"}
    for path, reason in cases.items():
        with pytest.raises(AudioFileError, match=reason) as info:
            band_detector.detect_file(path)
        assert info.value.path == str(path) and str(info.value).startswith(str(path))
    # the detector is still fine afterwards (one bad file never breaks a run)
    good = tmp_path / "good.ogg"
    sf.write(good, X, 16000, format="OGG", subtype="VORBIS")
    assert [e.label for e in band_detector.detect_file(good)] == ["low"]


def test_long_files_are_read_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, np.zeros((50000, 2), np.float32), 8000)
    blocks = list(read_blocks(path, block_frames=4096))
    assert max(len(b) for b in blocks) == 4096 and sum(len(b) for b in blocks) == 50000
    assert blocks[0].shape[1] == 2 and blocks[0].dtype == np.float32


def test_stereo_and_integer_input_are_downmixed_and_scaled(band_detector: streamdet.Detector) -> None:
    stereo = np.stack([X, X], axis=1)
    ints = (X * 32767).astype(np.int16)
    s2 = band_detector.stream(16000, channels=2)
    s2.push(stereo)
    s2.close()
    si = band_detector.stream(16000)
    si.push(ints)
    si.close()
    assert labels_times(s2.events) == labels_times(si.events) == [("low", 1.0, 2.0)]
    with pytest.raises(ValueError, match="2 channels, got 3"):
        band_detector.stream(16000, channels=2).push(np.zeros((10, 3), np.float32))


def test_lost_input_keeps_the_clock(band_detector: streamdet.Detector) -> None:
    """Dropped blocks reported with push_lost count as silence: later events keep their true times."""
    x = scene([("mid", 2.0, 2.5)], 3.0, 48000)
    s = band_detector.stream(48000, name="drops")
    s.push(x[:24000])
    s.push_lost(24000)  # 0.5 s never arrived
    s.push(x[48000:])
    s.close()
    assert s.lost_samples == 24000 and s.lost_seconds == pytest.approx(0.5)
    assert s.position == pytest.approx(3.0)
    assert labels_times(s.events) == [("mid", 2.0, 2.5)]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"drop_props": ["labels"]}, "labels"),
        ({"drop_props": ["step_seconds"]}, "step_seconds"),
        ({"props": {"window_samples": "8000"}}, "window_samples"),
        ({"props": {"step_seconds": "0.1"}}, "step_seconds"),
        ({"props": {"labels": '["a", "b"]'}}, "labels"),
        ({"props": {"labels": "not json"}}, "labels"),
        ({"props": {"output_activation": "relu"}}, "output_activation"),
        ({"props": {"sample_rate": "fast"}}, "sample_rate"),
        ({"props": {"streamdet_format": "9"}}, "streamdet_format"),
        ({"props": {"thresholds": '{"zzz": [0.5, 0.3]}'}}, "thresholds"),
        ({"props": {"postprocess": '{"zzz": {"min_gap": 1.0}}'}}, "postprocess"),
        ({"props": {"postprocess": '{"low": {"min_gap": -1.0}}'}}, "postprocess"),
        ({"props": {"postprocess": '{"low": {"merge": 1.0}}'}}, "postprocess"),
        ({"props": {"postprocess": '{"low": 1.0}'}}, "postprocess"),
        ({"window_dim": 12000}, "window_samples"),
    ],
)
def test_wrong_metadata_is_refused_naming_the_field(tmp_path: Path, kwargs: dict, field: str) -> None:
    path = build_band_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ModelMetadataError) as info:
        streamdet.Detector(path, device="cpu")
    assert str(info.value).startswith(f"{field}:"), str(info.value)


def test_model_file_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamdet.session

    assert streamdet.Detector(device="cpu").labels[0] == "alarm"  # None: the bundled default model
    monkeypatch.setattr(streamdet.session, "BUNDLED_MODEL", tmp_path / "missing" / "alerts.onnx")
    with pytest.raises(ModelLoadError, match=r"no bundled model is installed.*model="):
        streamdet.Detector()
    with pytest.raises(ModelLoadError, match=r"nope\.onnx: model file not found"):
        streamdet.Detector(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match=r"junk\.onnx: not a loadable ONNX model"):
        streamdet.Detector(junk)


def test_bad_settings(band_model: Path) -> None:
    with pytest.raises(ValueError, match="device"):
        streamdet.Detector(band_model, device="tpu")
    with pytest.raises(ValueError, match="longer than the model window"):
        streamdet.Detector(band_model, device="cpu", hop=2.0)
    with pytest.raises(ValueError, match="hop"):
        streamdet.Detector(band_model, device="cpu", hop=0)
    with pytest.raises(ValueError, match="lookahead"):
        streamdet.Detector(band_model, device="cpu", lookahead=-1)
    with pytest.raises(ValueError, match="min_gap"):
        streamdet.Detector(band_model, device="cpu", min_gap=-0.1)


@pytest.mark.parametrize(("setting", "value"), [("min_duration", float("inf")), ("min_duration", 1e308),
                                                ("min_gap", float("nan")), ("min_gap", 10**400),
                                                ("median_filter", float("inf")), ("median_filter", 1e300)])
def test_non_finite_or_absurd_seconds_are_a_value_error_naming_the_setting(band_model: Path, setting: str,
                                                                           value: float) -> None:
    """inf, NaN or a number past one day is refused when the Detector is built, as a ValueError that names the
    setting, not an OverflowError from the frame arithmetic later."""
    with pytest.raises(ValueError, match=setting) as info:
        streamdet.Detector(band_model, device="cpu", **{setting: value})
    assert not isinstance(info.value, OverflowError)


def test_runtime_does_not_import_torch_or_onnx_and_is_quiet(band_model: Path, tmp_path: Path) -> None:
    wav = tmp_path / "q.wav"
    sf.write(wav, scene([("low", 1.0, 2.0)], 3.0, 22050), 22050)
    code = (
        "import sys, streamdet\n"
        f"det = streamdet.Detector({str(band_model)!r})\n"
        f"events = det.detect_file({str(wav)!r})\n"
        "s = det.stream(16000); s.push([0.0] * 100); s.close()\n"
        "import streamdet.live, streamdet.detector\n"
        "print(det.provider, len(events), 'torch' in sys.modules, 'onnx' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["CPUExecutionProvider", "1", "False", "False"]
    assert result.stderr == ""  # no provider noise on a CPU-only machine
