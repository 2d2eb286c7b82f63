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
