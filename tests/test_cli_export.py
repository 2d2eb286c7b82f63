"""`streamdet export` (exit codes, messages, the written file) and `streamdet models show` on an exported model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from streamdet.cli import app

FIXTURES = Path(__file__).parent / "fixtures"
HTSAT_CKPT = FIXTURES / "htsat" / "tiny_state_dict.pt"
HF_TINY = FIXTURES / "ast" / "hf_tiny"
LABELS = ["alarm", "siren", "phone ring", "doorbell", "knock"]


def _invoke(*args: object):
    return CliRunner().invoke(app, ["export", *map(str, args)])


@pytest.fixture(scope="module")
def exported(cli, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``streamdet export`` of the official-format HTS-AT tiny checkpoint: 6.5 s window, batch 1, renamed labels."""
    folder = tmp_path_factory.mktemp("cli_export")
    labels = folder / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    out = folder / "htsat.onnx"
    result = cli("export", HTSAT_CKPT, "-o", out, "--window-seconds", "6.5", "--batch", "1", "--labels", labels,
                 timeout=300)
    return out, result


@pytest.mark.slow
def test_export_writes_a_verified_model_that_reproduces_the_official_outputs(exported) -> None:
    import onnxruntime as ort

    out, result = exported
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"wrote {out}: htsat fp32" in result.stdout
    assert "window 6.5 s (208000 samples at 32000 Hz), 32 steps of 0.203125 s, 5 classes, batch 1" in result.stdout
    assert "vs PyTorch: max |Δp|" in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 208000]
    assert [o.shape for o in session.get_outputs()] == [[1, 32, 5], [1, 5]]
    with np.load(FIXTURES / "htsat" / "tiny_io.npz") as data:
        framewise, clipwise = session.run(None, {"waveform": data["wave_6_5s"]})
        logits = data["6_5s_tscam_logits"][:, :, 0].transpose(0, 2, 1)
        np.testing.assert_allclose(framewise, 1 / (1 + np.exp(-logits)), rtol=0, atol=1e-4)
        np.testing.assert_allclose(clipwise, data["6_5s_clipwise_output"], rtol=0, atol=1e-4)
    assert json.loads(session.get_modelmeta().custom_metadata_map["labels"]) == LABELS


@pytest.mark.slow
def test_models_show_on_an_exported_file(cli, exported) -> None:
    out, _ = exported
    digest = hashlib.sha256(HTSAT_CKPT.read_bytes()).hexdigest()
    table = cli("models", "show", out, env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    for text in ("alarm, siren, phone ring, doorbell, knock", "32000 Hz", "6.5 s (208000 samples)",
                 "0.203125 s (32 steps per window)", "fp32", "waveform: tensor(float) [1, 208000]",
                 "framewise: tensor(float) [1, 32, 5]", "clipwise: tensor(float) [1, 5]",
                 "source: tiny_state_dict.pt", digest, "format htsat_official", "exported with:", "torch",
                 "more: architecture"):
        assert text in table.stdout, text
    assert len(table.stdout.splitlines()) < 40  # the provenance is summarised, not dumped
    for flag in (["--json"], ["--format", "json"]):
        full = cli("models", "show", out, *flag)
        assert full.returncode == 0, full.stderr
        info = json.loads(full.stdout)
        assert info["provenance"]["source"]["sha256"] == digest
        assert info["provenance"]["architecture"]["embed_dim"] == 16
        assert info["labels"] == LABELS and info["precision"] == "fp32" and info["steps_per_window"] == 32


def _load_toy(monkeypatch: pytest.MonkeyPatch, offset: float) -> None:
    """Make ``streamdet export`` load the toy model (whatever the checkpoint argument) to keep these tests fast."""
    from export_toy_model import ToyModel
    from streamdet.export import onnx_export

    monkeypatch.setattr(onnx_export, "_as_model", lambda _: ToyModel(offset=offset).eval())


def test_verification_failure_exits_1_with_the_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _load_toy(monkeypatch, offset=0.01)  # PyTorch and the exported graph disagree by 0.0025
    out = tmp_path / "toy.onnx"
    result = _invoke(HF_TINY, "-o", out)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "hf_tiny" in errors[0]
    assert "verification failed: ONNX Runtime differs from PyTorch by 0.0025" in errors[0]
    assert "Traceback" not in result.output and not out.exists()


def test_int8_json_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _load_toy(monkeypatch, offset=0.0)
    out = tmp_path / "toy8.onnx"
    result = _invoke(HF_TINY, "-o", out, "--precision", "int8", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["precision"] == "int8" and report["path"] == str(out) and report["batch"] == "dynamic"
    assert report["fp32_verification"]["max_abs_diff"] <= 1e-4
    assert isinstance(report["verification"]["events_match"], bool)
    assert report["bytes"] == out.stat().st_size
    summary = _invoke(HF_TINY, "-o", out, "--precision", "fp16")
    assert summary.exit_code == 0, summary.output
    for text in ("wrote", "toy fp16", "8 steps of 0.0125 s, 2 classes, batch dynamic", "fp32 graph vs PyTorch",
                 "fp16 graph vs PyTorch", "events on a"):
        assert text in summary.output, text


def test_checkpoint_errors_exit_1_with_one_clear_line(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "out.onnx"
    text = tmp_path / "notes.ckpt"
    text.write_text("hello\n")
    unknown = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3)}, unknown)
    empty_folder = tmp_path / "folder"
    empty_folder.mkdir()
    cases = [
        (tmp_path / "nope.ckpt", "nope.ckpt: no such checkpoint file or folder"),
        (text, "notes.ckpt: cannot read as a PyTorch checkpoint: not a torch.save file"),
        (unknown, "resnet.pth: unknown checkpoint format"),
        (empty_folder, "folder: a checkpoint folder must hold a transformers AST"),
    ]
    for checkpoint, message in cases:
        result = _invoke(checkpoint, "-o", out)
        assert result.exit_code == 1, (checkpoint, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], result.output
        assert "Traceback" not in result.output
    assert not out.exists()


def test_window_and_output_errors_exit_1(tmp_path: Path) -> None:
    result = _invoke(HTSAT_CKPT, "-o", tmp_path / "x.onnx", "--window-seconds", "12")
    assert result.exit_code == 1 and "htsat cannot take a 12 s window" in result.output
    assert "tiny_state_dict.pt" in result.output
    result = _invoke(HTSAT_CKPT, "-o", tmp_path)
    assert result.exit_code == 1 and f"error: cannot write {tmp_path}: it is a directory" in result.output
    result = _invoke(HTSAT_CKPT, "-o", tmp_path / "missing" / "x.onnx")
    assert result.exit_code == 1 and "does not exist" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--precision", "int4"], "--precision must be one of fp32, fp16, int8, not 'int4'"),
    (["--batch", "2"], "--batch must be dynamic or 1, not '2'"),
    (["--window-seconds", "0"], "--window-seconds must be positive"),
    (["--labels", "no-such-labels.txt"], "--labels no-such-labels.txt: no such file"),
    ([], "Missing option"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    output = [] if not args else ["-o", tmp_path / "x.onnx"]
    result = _invoke(HTSAT_CKPT, *output, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_missing_torch_says_how_to_install(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # import torch raises ImportError
        "from typer.testing import CliRunner\n"
        "from streamdet.cli import app\n"
        f"r = CliRunner().invoke(app, ['export', {str(HTSAT_CKPT)!r}, '-o', {str(tmp_path / 'x.onnx')!r}])\n"
        "print(r.exit_code)\n"
        "print(r.output)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "1"
    assert "pip install 'streamdet[train]'" in result.stdout
