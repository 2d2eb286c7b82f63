"""`streamdet eval`: reproduces HTS-AT's DESED figures through the CLI, JSON output, exit codes, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamdet.cli import app
from streamdet.metrics import read_events, write_events_jsonl

DATA = Path(__file__).parent / "data" / "desed_public_eval"
GT, META = str(DATA / "answer.tsv"), str(DATA / "answer_meta.tsv")


def _json(args: list[str]) -> dict:
    result = CliRunner().invoke(app, ["eval", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(("pred", "published"), [("htsat-test_outputmap.tsv", 48.42),
                                                 ("htsat-test-ensemble_outputmap.tsv", 50.67)])
def test_eval_reproduces_htsat_desed_macro_f1(pred: str, published: float) -> None:
    out = _json([str(DATA / pred), GT, "--meta", META, "--metric", "intersection"])
    assert round(100 * out["metrics"]["intersection"]["overall"]["f1_macro"], 2) == published
    assert out["metrics"]["intersection"]["params"] == {"dtc": 0.5, "gtc": 0.5, "cttc": 0.3}


def test_eval_subprocess_table_and_jsonl_paths(tmp_path: Path) -> None:
    """The installed entry point, JSONL predictions with directory-prefixed names, a table on stdout."""
    events = read_events(DATA / "htsat-test-ensemble_outputmap.tsv")
    prefixed = {f"audio/eval/{name}": evs for name, evs in events.items()}
    for name, evs in list(prefixed.items()):
        prefixed[name] = [type(e)(e.label, e.onset, e.offset, e.confidence, name) for e in evs]
    write_events_jsonl(prefixed, tmp_path / "pred.jsonl")
    result = subprocess.run([sys.executable, "-m", "streamdet", "eval", str(tmp_path / "pred.jsonl"), GT,
                             "--meta", META, "--metric", "intersection"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    macro = [line for line in result.stdout.splitlines() if "macro" in line]
    assert macro and "50.67" in macro[0]


def test_eval_default_metrics_and_psds() -> None:
    out = _json([str(DATA / "htsat-test_outputmap.tsv"), GT, "--meta", META, "--metric", "event,segment",
                 "--metric", "psds1", "--metric", "psds2"])
    metrics = out["metrics"]
    assert set(metrics) == {"event", "segment", "psds1", "psds2"}
    assert round(metrics["event"]["overall"]["f1_macro"], 4) == 0.0676
    assert round(metrics["segment"]["overall"]["f1_micro"], 4) == 0.6955
    assert 0.0 < metrics["psds1"]["overall"]["psds"] < metrics["psds2"]["overall"]["psds"] < 1.0


def test_eval_directory_of_operating_points(tmp_path: Path) -> None:
    ops = tmp_path / "ops"
    ops.mkdir()
    for name in ("htsat-test_outputmap.tsv", "htsat-test-ensemble_outputmap.tsv"):
        (ops / name).write_bytes((DATA / name).read_bytes())
    out = _json([str(ops), GT, "--meta", META, "--metric", "psds2"])
    assert out["metrics"]["psds2"]["params"]["n_operating_points"] == 2
    single = _json([str(DATA / "htsat-test_outputmap.tsv"), GT, "--meta", META, "--metric", "psds2"])
    assert out["metrics"]["psds2"]["overall"]["psds"] >= single["metrics"]["psds2"]["overall"]["psds"]


@pytest.mark.parametrize("args", [
    ["missing.tsv", GT],
    [GT, GT, "--metric", "bogus"],
    [GT, GT, "--metric", "psds1"],  # PSDS needs --meta
    [GT, GT, "--format", "yaml"],
    [GT, GT, "--dtc", "1.5"],
])
def test_eval_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 2, result.output


def test_eval_malformed_input_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("filename\tonset\toffset\tevent_label\nx.wav\t1.0\tsoon\tDog\n")
    result = CliRunner().invoke(app, ["eval", str(bad), GT])
    assert result.exit_code == 1
    assert f"{bad}:2" in result.output and "offset" in result.output


def test_eval_overlapping_predictions_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "overlap.tsv"
    bad.write_text("filename\tonset\toffset\tevent_label\nx.wav\t1.0\t3.0\tDog\nx.wav\t2.0\t4.0\tDog\n")
    result = CliRunner().invoke(app, ["eval", str(bad), GT, "--metric", "intersection"])
    assert result.exit_code == 1
    assert "overlapping 'Dog' events in x.wav" in result.output


def test_eval_names_the_classes_left_out_of_the_macro_average_and_unscored_predictions(tmp_path: Path) -> None:
    """The bundled example's case: the doorbell is missed (its F1 is undefined, so the macro average skips it, as the
    reference packages do) and an alarm is predicted where the ground truth has none (no metric scores it). The
    figures keep that arithmetic; the output says both."""
    gt = tmp_path / "gt.tsv"
    gt.write_text("filename\tonset\toffset\tevent_label\nex.wav\t1.19\t2.68\tknock\nex.wav\t2.72\t3.94\tdoorbell\n"
                  "ex.wav\t7.93\t8.92\tspeech\n")
    pred = tmp_path / "pred.tsv"
    pred.write_text("filename\tonset\toffset\tevent_label\nex.wav\t0.375\t0.875\talarm\nex.wav\t1.125\t2.75\tknock\n"
                    "ex.wav\t8.0\t9.125\tspeech\n")
    result = CliRunner().invoke(app, ["eval", str(pred), str(gt), "--metric", "intersection"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert "macro: the mean over 2 of 3 classes; left out (F1 undefined" in flat and "doorbell" in flat
    assert "1 prediction(s) of labels not in the ground truth (alarm)" in result.stderr
    assert "alarm 0.375-0.875 s in ex.wav" in result.stderr
    out = _json([str(pred), str(gt), "--metric", "intersection"])
    assert round(out["metrics"]["intersection"]["overall"]["f1_macro"], 4) == 1.0  # the reference arithmetic
    assert out["metrics"]["intersection"]["left_out_of_macro"] == ["doorbell"]
    assert [(e["label"], e["onset"]) for e in out["unscored_predictions"]] == [("alarm", 0.375)]
