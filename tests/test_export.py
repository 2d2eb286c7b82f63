"""streamdet.export.to_onnx: official checkpoints -> ONNX files that follow docs/DESIGN.md §2, verified against PyTorch.

The official tiny fixtures (tests/fixtures/*/PROVENANCE.md) go checkpoint -> ONNX -> ONNX Runtime and must reproduce
the reference outputs of the official code within 1e-4. A toy model (``tests/export_toy_model.py``) exports in well
under a second and covers the failure paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_toy_model import ToyModel
from streamdet.export import FP32_TOLERANCE, ExportError, read_labels_file, to_onnx
from streamdet.export.precision import FRONTEND_SCOPE
from streamdet.models import CheckpointError, load_checkpoint
from torch import nn

from streamdet.model_metadata import REQUIRED_FIELDS, ModelMetadata

FIXTURES = Path(__file__).parent / "fixtures"
HTSAT_CKPT = FIXTURES / "htsat" / "tiny_state_dict.pt"
AST_OFFICIAL = FIXTURES / "ast" / "official_tiny" / "ast_tiny224_depth1_f10_t10_tdim1024_label5.pth"
HF_TINY = FIXTURES / "ast" / "hf_tiny"
ATOL = 1e-4  # the end-to-end bound on probabilities


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x.astype(np.float64)))


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path: Path, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    framewise, clipwise = _session(path).run(["framewise", "clipwise"], {"waveform": wave.astype(np.float32)})
    return framewise, clipwise


def _shapes(path: Path) -> dict[str, list]:
    session = _session(path)
    return {t.name: list(t.shape) for t in [*session.get_inputs(), *session.get_outputs()]}


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


# ------------------------------------------------------------------------------------------------ shared exports
@pytest.fixture(scope="module")
def htsat_model() -> nn.Module:
    return load_checkpoint(HTSAT_CKPT)


@pytest.fixture(scope="module")
def htsat_onnx(tmp_path_factory: pytest.TempPathFactory):
    """The official-format HTS-AT tiny checkpoint exported at its native 10 s window, dynamic batch, fp32."""
    folder = tmp_path_factory.mktemp("htsat_fp32")
    extra = {"recipe": "tests/test_export.py", "evaluation": {"test": {"event_f1_macro": 0.5}}}
    return to_onnx(HTSAT_CKPT, folder / "htsat.onnx", provenance=extra)


@pytest.fixture(scope="module")
def htsat_fp16(tmp_path_factory: pytest.TempPathFactory):
    return to_onnx(HTSAT_CKPT, tmp_path_factory.mktemp("htsat_fp16") / "htsat16.onnx", window_seconds=2.0,
                   precision="fp16")


# ------------------------------------------------------------------------------- official fixtures end to end
@pytest.mark.slow
def test_htsat_official_checkpoint_reproduces_the_official_outputs(htsat_onnx) -> None:
    data = _npz(FIXTURES / "htsat" / "tiny_io.npz")
    framewise, clipwise = _run(htsat_onnx.path, data["wave_10s"])
    expected = _sigmoid(data["10s_tscam_logits"][:, :, 0].transpose(0, 2, 1))  # [1, 32, 5]: 32 steps, no repeats
    assert framewise.shape == (1, 32, 5) and clipwise.shape == (1, 5)
    np.testing.assert_allclose(framewise, expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.repeat(framewise, 32, axis=1), data["10s_framewise_output"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(clipwise, data["10s_clipwise_output"], rtol=0, atol=ATOL)


@pytest.mark.slow
def test_official_ast_checkpoint_reproduces_sigmoid_logits_from_the_waveform(tmp_path: Path) -> None:
    data = _npz(FIXTURES / "ast" / "official_tiny" / "official_tiny_io.npz")
    report = to_onnx(AST_OFFICIAL, tmp_path / "ast.onnx")
    assert (report.model_type, report.sample_rate, report.window_samples, report.steps) == ("ast", 16000, 163840, 1)
    assert report.step_seconds == pytest.approx(10.24)
    framewise, clipwise = _run(report.path, data["wave_10s"][None])
    np.testing.assert_allclose(clipwise, _sigmoid(data["logits"]), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(framewise, clipwise[:, None, :])  # one step covering the whole window
    assert _shapes(report.path) == {"waveform": ["batch", 163840], "framewise": ["batch", 1, 5],
                                    "clipwise": ["batch", 5]}


@pytest.mark.slow
def test_transformers_ast_folder_at_a_shorter_window(tmp_path: Path) -> None:
    data = _npz(HF_TINY / "tiny_io.npz")
    report = to_onnx(HF_TINY, tmp_path / "hf.onnx", window_seconds=4.0)
    assert report.window_samples == 64000 == data["wave_4s"].shape[0]
    _, clipwise = _run(report.path, data["wave_4s"][None])
    np.testing.assert_allclose(clipwise, _sigmoid(data["logits_4s"]), rtol=0, atol=ATOL)
    source = json.loads(_props(report.path)["provenance"])["source"]
    assert source["format"] == "ast_transformers" and source["file"] == "hf_tiny"
    assert source["sha256"] == hashlib.sha256((HF_TINY / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_streamdet_checkpoint_of_a_token_semantic_ast(tmp_path: Path) -> None:
    from streamdet.models import save_checkpoint

    model = load_checkpoint(HF_TINY, model_type="ast_tscam")
    own = save_checkpoint(model, tmp_path / "own.pt", recipe="tests/test_export.py")
    report = to_onnx(own, tmp_path / "tscam.onnx", window_seconds=4.0)
    assert (report.model_type, report.steps, report.step_seconds) == ("ast_tscam", 40, pytest.approx(0.1))
    assert report.verification.max_abs_diff <= FP32_TOLERANCE
    assert _shapes(report.path)["framewise"] == ["batch", 40, 5]
    wave = _npz(HF_TINY / "tiny_io.npz")["wave_4s"][None]
    framewise, clipwise = _run(report.path, wave)
    with torch.no_grad():
        expected = model(torch.from_numpy(wave))
    np.testing.assert_allclose(framewise, expected.framewise[:, :40].numpy(), rtol=0, atol=ATOL)  # the 4 s covered
    np.testing.assert_allclose(clipwise, expected.clipwise.numpy(), rtol=0, atol=ATOL)
    provenance = json.loads(_props(report.path)["provenance"])
    assert provenance["source"]["format"] == "streamdet" and provenance["source"]["file"] == "own.pt"
    assert provenance["model_provenance"]["recipe"] == "tests/test_export.py"
    assert provenance["model_provenance"]["converted_from"]["format"] == "ast_transformers"


# -------------------------------------------------------------------------------------------- the model contract
@pytest.mark.slow
def test_metadata_has_every_contract_field_and_the_runtime_accepts_it(htsat_onnx, htsat_model) -> None:
    import streamdet

    props = _props(htsat_onnx.path)
    assert set(REQUIRED_FIELDS) <= set(props)
    meta = ModelMetadata.from_props(props)
    assert (meta.model_type, meta.sample_rate, meta.window_samples) == ("htsat", 32000, 320000)
    assert meta.labels == tuple(htsat_model.labels) == tuple(f"class_{i}" for i in range(5))
    assert (meta.step_seconds, meta.steps_per_window) == (0.3125, 32)
    assert (meta.output_activation, meta.precision, meta.thresholds) == ("sigmoid", "fp32", None)
    assert dict(meta.frontend) == json.loads(json.dumps(htsat_model.frontend_config()))
    provenance = dict(meta.provenance)
    source = provenance["source"]
    assert source["file"] == "tiny_state_dict.pt" and source["format"] == "htsat_official"
    assert source["sha256"] == hashlib.sha256(HTSAT_CKPT.read_bytes()).hexdigest()
    assert "path" not in source  # no local absolute paths in a shipped file
    assert provenance["recipe"] == "tests/test_export.py"
    assert provenance["evaluation"] == {"test": {"event_f1_macro": 0.5}}
    assert {"streamdet", "torch", "onnx", "onnxruntime", "created"} <= set(provenance["exported"])
    assert provenance["architecture"]["embed_dim"] == 16

    detector = streamdet.Detector(htsat_onnx.path, device="cpu")
    assert detector.labels == list(meta.labels) and detector.metadata == meta
    detector.close()


@pytest.mark.slow
def test_report_describes_the_file(htsat_onnx) -> None:
    data = htsat_onnx.path.read_bytes()
    assert htsat_onnx.bytes == len(data) and htsat_onnx.sha256 == hashlib.sha256(data).hexdigest()
    assert (htsat_onnx.precision, htsat_onnx.batch, htsat_onnx.steps) == ("fp32", "dynamic", 32)
    assert htsat_onnx.fp32_verification is None
    as_dict = dataclasses.asdict(htsat_onnx)  # what the training recipe stores in its report
    assert as_dict["verification"]["max_abs_diff"] == htsat_onnx.verification.max_abs_diff
    assert json.loads(json.dumps(htsat_onnx.to_dict()))["steps"] == 32


@pytest.mark.slow
def test_graph_is_one_file_without_stft_and_with_a_static_time_axis(htsat_onnx) -> None:
    assert [p.name for p in htsat_onnx.path.parent.iterdir()] == ["htsat.onnx"]  # no external data, no leftovers
    model = onnx.load(str(htsat_onnx.path), load_external_data=False)
    onnx.checker.check_model(model)
    assert not [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"STFT", "DFT"}, ops
    frontend_ops = {node.op_type for node in model.graph.node if node.name.startswith(FRONTEND_SCOPE)}
    assert "Conv" in frontend_ops  # the DFT is a convolution
    assert _shapes(htsat_onnx.path) == {"waveform": ["batch", 320000], "framewise": ["batch", 32, 5],
                                        "clipwise": ["batch", 5]}
    # the declared shapes agree with ONNX shape inference
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


@pytest.mark.slow
def test_dynamic_batch_of_three_matches_pytorch(htsat_onnx, htsat_model) -> None:
    check = htsat_onnx.verification
    assert check.batch_sizes == [1, 3] and check.max_abs_diff <= FP32_TOLERANCE
    assert check.max_abs_diff == max(check.framewise_max_abs_diff, check.clipwise_max_abs_diff)
    assert {"noise", "sweep", "silence", "loud"} <= set(check.inputs)
    data = _npz(FIXTURES / "htsat" / "tiny_io.npz")
    wave = data["wave_10s"][0]
    rng = np.random.default_rng(3)
    batch = np.stack([wave, wave[::-1], 0.2 * rng.standard_normal(wave.shape[0])]).astype(np.float32)
    framewise, clipwise = _run(htsat_onnx.path, batch)
    with torch.no_grad():
        expected = htsat_model(torch.from_numpy(batch))
    assert framewise.shape == (3, 32, 5)
    np.testing.assert_allclose(framewise, expected.framewise.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(clipwise, expected.clipwise.numpy(), rtol=0, atol=ATOL)


def test_fixed_batch_of_one(tmp_path: Path) -> None:
    report = to_onnx(ToyModel(), tmp_path / "toy.onnx", batch=1)
    assert report.batch == "1" and report.verification.batch_sizes == [1]
    assert _shapes(report.path) == {"waveform": [1, 800], "framewise": [1, 8, 2], "clipwise": [1, 2]}
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        _run(report.path, np.zeros((3, 800), np.float32))
    dynamic = to_onnx(ToyModel(), tmp_path / "toy_dynamic.onnx")
    assert _shapes(dynamic.path)["framewise"] == ["batch", 8, 2]
    assert _run(dynamic.path, np.zeros((3, 800), np.float32))[0].shape == (3, 8, 2)


def test_labels_and_thresholds_are_stored(tmp_path: Path) -> None:
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text("index,mid,display_name\n0,/m/0,Smoke alarm\n1,/m/1,Siren\n")
    names = read_labels_file(labels_file)
    assert names == ["Smoke alarm", "Siren"]
    report = to_onnx(ToyModel(), tmp_path / "toy.onnx", labels=names, thresholds={"Siren": [0.6, 0.4]})
    meta = ModelMetadata.from_props(_props(report.path))
    assert meta.labels == ("Smoke alarm", "Siren") and meta.thresholds == {"Siren": (0.6, 0.4)}
    assert (meta.window_samples, meta.step_seconds, meta.model_type) == (800, 0.0125, "toy")


# --------------------------------------------------------------------------------------------- verification
def test_disagreeing_graph_fails_verification_with_the_figure_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "broken.onnx"
    with pytest.raises(ExportError, match=r"verification failed: ONNX Runtime differs from PyTorch by") as info:
        to_onnx(ToyModel(offset=0.01), out)
    figure = float(re.search(r"differs from PyTorch by ([0-9.e+-]+)", str(info.value)).group(1))
    assert figure == pytest.approx(1 / (1 + np.exp(-0.01)) - 0.5, rel=0.01)  # the silence probe: logits 0
    assert "limit is 0.0001" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    report = to_onnx(ToyModel(offset=0.01), out, verify=False)  # the same graph, unchecked, is written
    assert report.verification is None and out.is_file()


def test_tolerance_is_enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamdet.export import onnx_export

    report = to_onnx(ToyModel(), tmp_path / "ok.onnx")
    assert report.verification.max_abs_diff <= FP32_TOLERANCE
    monkeypatch.setattr(onnx_export, "FP32_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="verification failed"):
        to_onnx(ToyModel(), tmp_path / "strict.onnx")
    assert not (tmp_path / "strict.onnx").exists()


# ----------------------------------------------------------------------------------------------- precisions
@pytest.mark.slow
def test_fp16_keeps_the_frontend_in_fp32_and_reports_its_deviation(htsat_fp16) -> None:
    import streamdet

    report = htsat_fp16
    assert report.precision == "fp16" and ModelMetadata.from_props(_props(report.path)).precision == "fp16"
    assert report.fp32_verification.max_abs_diff <= FP32_TOLERANCE
    check = report.verification
    assert 0 < check.max_abs_diff < 0.05 and check.batch_sizes == [1, 3]
    assert isinstance(check.events_match, bool)
    assert {"scene_seconds", "fp32_events", "events", "tolerance_seconds"} <= set(check.events)
    model = onnx.load(str(report.path))
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    scope = [n for n in model.graph.node if n.name.startswith(FRONTEND_SCOPE)]
    joins = [n for n in scope if n.name.endswith("_cast_fp16")]  # where the fp32 front-end feeds the fp16 network
    assert len(joins) == 1 and joins[0].op_type == "Cast"
    frontend = [n for n in scope if n not in joins]
    convs = [n for n in frontend if n.op_type == "Conv"]
    assert len(convs) == 2 and all(types[n.output[0]] == onnx.TensorProto.FLOAT for n in convs)  # DFT real, imag
    produced = [types.get(out) for n in frontend for out in n.output]
    assert onnx.TensorProto.FLOAT16 not in produced  # nothing in the front-end is fp16 (power, mel, log)
    kernels = [a.t for n in frontend for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
    assert onnx.TensorProto.FLOAT in {t.data_type for t in kernels} and onnx.TensorProto.FLOAT16 not in {
        t.data_type for t in kernels}
    inits = [t.data_type for t in model.graph.initializer]
    assert inits.count(onnx.TensorProto.FLOAT16) > 50 and onnx.TensorProto.FLOAT not in inits  # the network is fp16
    assert _shapes(report.path) == {"waveform": ["batch", 64000], "framewise": ["batch", 32, 5],
                                    "clipwise": ["batch", 5]}
    session = _session(report.path)
    assert [t.type for t in [*session.get_inputs(), *session.get_outputs()]] == ["tensor(float)"] * 3
    t = np.arange(64000) / 32000
    full_scale = np.sin(2 * np.pi * 1000 * t)[None].astype(np.float32)  # its power spectrum overflows fp16
    framewise, clipwise = _run(report.path, full_scale)
    assert np.isfinite(framewise).all() and np.isfinite(clipwise).all()
    streamdet.Detector(report.path, device="cpu").close()


@pytest.mark.slow
def test_int8_quantises_matmul_weights_and_reports_its_deviation(tmp_path: Path) -> None:
    report = to_onnx(HF_TINY, tmp_path / "hf8.onnx", window_seconds=4.0, precision="int8")
    assert report.precision == "int8" and report.fp32_verification.max_abs_diff <= FP32_TOLERANCE
    check = report.verification
    assert 0 < check.max_abs_diff < 0.2 and isinstance(check.events_match, bool)
    assert check.events["tolerance_seconds"] == pytest.approx(4.0)
    model = onnx.load(str(report.path))
    quantised = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert quantised and not [n for n in quantised if n.name.startswith(FRONTEND_SCOPE)]
    per_channel = [t for t in model.graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1]
    assert per_channel and max(t.dims[0] for t in per_channel) > 1  # one scale per output channel
    assert ModelMetadata.from_props(_props(report.path)).precision == "int8"


# ------------------------------------------------------------------------------------------------------ errors
def test_missing_unreadable_and_unknown_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nope\.ckpt"):
        to_onnx(tmp_path / "nope.ckpt", out)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(HTSAT_CKPT.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"corrupt\.pth: cannot read as a PyTorch checkpoint"):
        to_onnx(corrupt, out)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt: cannot read .*not a torch.save file"):
        to_onnx(text, out)
    unknown = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3)}, unknown)
    with pytest.raises(CheckpointError, match=r"resnet\.pth: unknown checkpoint format"):
        to_onnx(unknown, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.pth", "notes.ckpt", "resnet.pth"]


@pytest.mark.parametrize("seconds, message", [
    (12.0, r"htsat cannot take a 12 s window: .*longest window is 327679 samples"),
    (0.01, r"htsat cannot take a 0\.01 s window: .*more than 512 samples"),
    (1.0001, r"not a whole number of samples per step for 32 framewise steps; nearest windows: 1 s or 1\.001 s"),
    (-1.0, r"window length must be a positive number of seconds"),
])
def test_windows_the_architecture_cannot_take(htsat_model, tmp_path: Path, seconds: float, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        to_onnx(htsat_model, tmp_path / "x.onnx", window_seconds=seconds)
    assert list(tmp_path.iterdir()) == []


def test_ast_window_longer_than_its_input_length(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"ast cannot take a 11 s window: .*target_length"):
        to_onnx(AST_OFFICIAL, tmp_path / "x.onnx", window_seconds=11.0)


def test_unwritable_output_paths(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"cannot write .*: it is a directory"):
        to_onnx(ToyModel(), tmp_path)
    with pytest.raises(ExportError, match=r"cannot write .*: the folder .*missing does not exist"):
        to_onnx(ToyModel(), tmp_path / "missing" / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_options(tmp_path: Path) -> None:
    out = tmp_path / "x.onnx"
    for kwargs, message in [
        ({"precision": "int4"}, "precision must be one of fp32, fp16, int8"),
        ({"batch": 2}, "batch must be 'dynamic' or 1"),
        ({"labels": ["a"]}, "1 labels given but the model has 2 classes"),
        ({"labels": ["a", "a"]}, "labels must be unique"),
        ({"thresholds": {"beep": [0.2, 0.5]}}, r"thresholds: 'beep' needs 0 <= off <= on <= 1"),
    ]:
        with pytest.raises(ExportError, match=message):
            to_onnx(ToyModel(), out, **kwargs)
    with pytest.raises(ExportError, match="has no 'model_type'"):
        to_onnx(nn.Linear(2, 2), out)
    assert list(tmp_path.iterdir()) == []
