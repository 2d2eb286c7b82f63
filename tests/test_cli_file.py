"""`streamdet file` through the installed entry point: every format, folders, a mixed batch with broken files,
the round trip into `streamdet eval`, thresholds, --plot PNGs, progress on a terminal only, usage errors."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pty_capture import read_all
from typer.testing import CliRunner

from streamdet.cli import app
from streamdet.metrics import read_events

SPEC_A = [(0, 0.5, 1.0), (1, 2.0, 1.5), (2, 4.0, 0.6)]
SPEC_B = [(2, 1.0, 2.0), (0, 3.5, 1.0)]


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory, cli_case) -> dict:
    """A folder with good files (two rates, stereo, a subfolder, a quiet one), broken ones and a non-audio file."""
    root = tmp_path_factory.mktemp("audio")
    good = root / "good"
    (good / "sub").mkdir(parents=True)
    x, truth_a = cli_case.scene(SPEC_A, 6.0, 44100)
    sf.write(good / "a.wav", np.stack([x, 0.5 * x], axis=1), 44100)  # stereo, 44.1 kHz
    y, truth_b = cli_case.scene(SPEC_B, 5.0, 16000)
    sf.write(good / "sub" / "b.flac", y, 16000)
    sf.write(good / "quiet.ogg", np.zeros(32000, np.float32), 16000)
    (good / "notes.txt").write_text("not audio; a folder scan skips it\n")
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not a wave file")
    (bad / "empty.wav").write_bytes(b"")
    sf.write(bad / "no_samples.wav", np.zeros(0, np.float32), 16000)
    (bad / "text.mp3").write_text("this is text pretending to be an mp3\n")
    truth = {str(good / "a.wav"): truth_a, str(good / "sub" / "b.flac"): truth_b, str(good / "quiet.ogg"): []}
    return {"root": root, "good": good, "bad": bad, "truth": truth}


def _check(found: dict[str, list[tuple[str, float, float]]], truth: dict, tol: float) -> None:
    assert set(found) == set(truth), (found.keys(), truth.keys())
    for name, expected in truth.items():
        got = sorted(found[name], key=lambda e: e[1])
        expected = sorted(expected, key=lambda e: e[1])
        assert [g[0] for g in got] == [e[0] for e in expected], (name, got, expected)
        for g, e in zip(got, expected, strict=True):
            assert abs(g[1] - e[1]) <= tol and abs(g[2] - e[2]) <= tol, (name, got, expected)


def _parse(fmt: str, text: str) -> dict[str, list[tuple[str, float, float]]]:
    found: dict[str, list] = {}
    if fmt == "jsonl":
        for line in text.splitlines():
            obj = json.loads(line)
            assert set(obj) == {"file", "label", "onset", "offset", "confidence"}
            assert 0.0 <= obj["confidence"] <= 1.0
            found.setdefault(obj["file"], []).append((obj["label"], obj["onset"], obj["offset"]))
        return found
    rows = list(csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ","))
    header = ["filename", "onset", "offset", "event_label"] + (["confidence"] if fmt == "csv" else [])
    assert rows[0] == header
    for row in rows[1:]:
        events = found.setdefault(row[0], [])
        if row[1]:
            events.append((row[3], float(row[1]), float(row[2])))
    return found


@pytest.mark.parametrize("fmt", ["jsonl", "tsv", "csv", "table"])
def test_every_format_on_a_folder(cli, cli_case, audio, fmt: str) -> None:
    result = cli("file", audio["good"], "--model", cli_case.model, "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert "3 file(s)" in result.stderr and "model " in result.stderr  # messages on stderr only
    if fmt == "table":
        lines = result.stdout.splitlines()
        assert "label" in lines[1] and "onset" in lines[1] and "confidence" in lines[1]
        for name, events in audio["truth"].items():
            assert name in result.stdout
            for label, onset, offset in events:
                assert any(label in ln and f"{onset:.2f}" in ln and f"{offset:.2f}" in ln for ln in lines), label
        assert "(no events)" in result.stdout
        return
    found = _parse(fmt, result.stdout)
    truth = audio["truth"]
    if fmt == "jsonl":  # a file without events has no line in JSONL
        truth = {k: v for k, v in truth.items() if v}
    _check(found, truth, cli_case.tolerance)


def test_mixed_batch_reports_each_bad_file_and_exits_1(cli, cli_case, audio) -> None:
    bad = audio["bad"]
    args = [audio["good"] / "a.wav", bad / "corrupt.wav", bad / "empty.wav", audio["good"] / "sub",
            bad / "no_samples.wav", bad / "text.mp3", bad / "missing.wav", bad]
    result = cli("file", *args, "--model", cli_case.model, "--format", "jsonl")
    assert result.returncode == 1
    found = _parse("jsonl", result.stdout)  # stdout stays clean JSONL
    truth = {k: v for k, v in audio["truth"].items() if "quiet" not in k}
    _check(found, truth, cli_case.tolerance)
    err = result.stderr
    for name, reason in [("corrupt.wav", "cannot decode"), ("empty.wav", "empty file"),
                         ("no_samples.wav", "no audio samples"), ("text.mp3", "cannot decode"),
                         ("missing.wav", "no such file")]:
        line = next((ln for ln in err.splitlines() if name in ln and ln.startswith("error:")), None)
        assert line is not None and reason in line, (name, err)
    assert "2 file(s)" in err and "failed" in err


def test_output_files_round_trip_through_streamdet_eval(cli, cli_case, audio, tmp_path: Path) -> None:
    good = audio["good"]
    gt = tmp_path / "gt.tsv"
    with gt.open("w") as fh:
        fh.write("filename\tonset\toffset\tevent_label\n")
        for name, events in audio["truth"].items():
            base = Path(name).name
            fh.writelines(f"{base}\t{on}\t{off}\t{label}\n" for label, on, off in events)
            if not events:
                fh.write(f"{base}\t\t\t\n")
    for suffix in ("jsonl", "tsv", "csv"):
        out = tmp_path / f"pred.{suffix}"
        result = cli("file", good, "--model", cli_case.model, "--output", out)  # format from the suffix
        assert result.returncode == 0 and result.stdout == "" and str(out) in result.stderr, result.stderr
        table = read_events(out)
        assert {k for k, v in table.items() if v} == {k for k, v in audio["truth"].items() if v}
        scored = cli("eval", out, gt, "--metric", "event", "--format", "json")
        assert scored.returncode == 0, scored.stderr
        f1 = json.loads(scored.stdout)["metrics"]["event"]["overall"]["f1_macro"]
        assert f1 == pytest.approx(1.0), (suffix, f1)


def test_thresholds_file_and_threshold_option(cli, cli_case, audio, tmp_path: Path) -> None:
    wav = audio["good"] / "a.wav"
    never = cli_case.labels[1]
    rules = tmp_path / "thresholds.json"
    rules.write_text(json.dumps({never: [1.0, 0.9]}))  # a score never reaches 1.0: no events of that class
    result = cli("file", wav, "--model", cli_case.model, "--thresholds", rules, "-f", "jsonl")
    assert result.returncode == 0, result.stderr
    labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    assert never not in labels and set(labels) == {cli_case.labels[0], cli_case.labels[2]}
    result = cli("file", wav, "--model", cli_case.model, "--threshold", "1.0,0.9", "-f", "jsonl")
    assert result.returncode == 0 and result.stdout == ""


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_one_png_per_file(cli, cli_case, audio, tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    result = cli("file", audio["good"], "--model", cli_case.model, "--plot", plots, "-f", "jsonl")
    assert result.returncode == 0, result.stderr
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["a.png", "b.png", "quiet.png"]
    for name in pngs:
        width, height = _png_size(plots / name)
        assert width >= 1000 and height >= 500
        assert f"plot: {plots / name}" in result.stderr


def test_plot_without_matplotlib_names_the_extra(cli_case, audio, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = CliRunner().invoke(app, ["file", str(audio["good"] / "a.wav"), "--model", str(cli_case.model),
                                      "--plot", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "streamdet[plot]" in result.output and "matplotlib" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "--format must be one of"),
        (["--threshold", "0.5", "--thresholds", "t.json"], "either --threshold or --thresholds"),
        (["--threshold", "high"], "--threshold: expected ON or ON,OFF"),
        (["--threshold", "0.3,0.5"], "off <= on"),
        (["--hop", "0"], "--hop must be positive"),
        (["--device", "tpu"], "device"),
        (["--thresholds", "nope.json"], "no such file"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_usage_errors_exit_2(cli_case, audio, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["file", str(audio["good"] / "a.wav"), "--model", str(cli_case.model), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_threads_default_to_every_core_and_can_be_set(cli_case, audio) -> None:
    args = ["file", str(audio["good"] / "a.wav"), "--model", str(cli_case.model), "--device", "cpu"]
    cores = len(os.sched_getaffinity(0))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and f"CPU ({cores} thread" in result.stderr, result.stderr
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0 and "CPU (1 thread)" in result.stderr, result.stderr


def test_missing_model_is_a_usage_error(cli, audio, tmp_path: Path) -> None:
    result = cli("file", audio["good"] / "a.wav", "--model", tmp_path / "none.onnx")
    assert result.returncode == 2 and "none.onnx: model file not found" in result.stderr
    result = cli("file", audio["good"] / "a.wav", "--model", audio["good"] / "a.wav")
    assert result.returncode == 2 and "not a loadable ONNX model" in result.stderr


def test_progress_bar_goes_to_a_terminal_stderr_only(cli, cli_case, tmp_path: Path) -> None:
    long = tmp_path / "long.wav"
    x, truth = cli_case.scene([(0, 20.0, 5.0)], 40.0, 16000)
    sf.write(long, x, 16000)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([*cli.command, "file", str(long), "--model", str(cli_case.model), "-f", "jsonl"],
                              stdout=subprocess.PIPE, stderr=slave, timeout=120)
        os.close(slave)
        chunks: list[bytes] = []
        read_all(master, chunks)
    finally:
        os.close(master)
    assert proc.returncode == 0
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert "long.wav" in terminal and "%" in terminal and "━" in terminal  # the progress bar
    lines = proc.stdout.decode().splitlines()
    assert [json.loads(line)["label"] for line in lines] == [truth[0][0]]  # stdout: results only
    piped = cli("file", long, "--model", cli_case.model, "-f", "jsonl")  # stderr not a terminal: no bar
    assert "━" not in piped.stderr and "%" not in piped.stderr


def test_ctrl_c_stops_the_batch_keeps_finished_results_and_exits_130(cli, cli_case, tmp_path: Path) -> None:
    x, truth = cli_case.scene([(0, 20.0, 5.0)], 300.0, 16000)
    big = tmp_path / "big.wav"
    sf.write(big, x, 16000, subtype="PCM_16")
    names = []
    for i in range(12):  # twelve inputs (links to one file): far more work than a signal takes to arrive
        link = tmp_path / f"copy{i:02d}.wav"
        link.symlink_to(big)
        names.append(str(link))
    proc = subprocess.Popen([*cli.command, "file", *names, "--model", str(cli_case.model), "-f", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **cli.interruptible)
    try:
        first = proc.stdout.readline()  # the first file is done
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    rows = [json.loads(line) for line in [first, *out.splitlines()]]  # every line written is whole
    assert all(r["label"] == truth[0][0] for r in rows)
    finished = len({r["file"] for r in rows})
    assert 1 <= finished < len(names)
    assert f"interrupted after {finished} of {len(names)} file(s)" in err and "Traceback" not in err


def test_log_mel_covers_the_whole_file_and_keeps_short_sounds(tmp_path: Path) -> None:
    from streamdet.cli.plotting import FLOOR_DB, log_mel

    sr = 16000
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(2 * sr, np.float32), sr)
    spec, step, start, _ = log_mel(silent)
    assert start <= 0.0 and start + spec.shape[1] * step >= 2.0 - 1e-9  # no strip left blank at either end
    assert np.all(spec == FLOOR_DB)
    # A 30 ms click in a long file, with columns much wider than one FFT frame: still in the picture.
    x = np.zeros(600 * sr, np.float32)
    t = np.arange(int(0.03 * sr)) / sr
    x[int(301.013 * sr) : int(301.013 * sr) + len(t)] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    click = tmp_path / "click.wav"
    sf.write(click, x, sr)
    spec, step, start, _ = log_mel(click, max_columns=1000)
    assert spec.shape[1] <= 1000 and step >= 0.5
    assert start <= 0.0 and start + spec.shape[1] * step >= 600.0 - 1e-9
    loud = int(np.argmax(spec.max(axis=0)))
    assert start + loud * step <= 301.013 <= start + (loud + 1) * step and spec.max() > FLOOR_DB + 40


def test_default_format_is_a_table_on_a_terminal_and_jsonl_in_a_pipe(cli, cli_case, audio) -> None:
    wav = audio["good"] / "a.wav"
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([*cli.command, "file", str(wav), "--model", str(cli_case.model)], stdout=slave,
                              stderr=subprocess.PIPE, timeout=120, env={**os.environ, "COLUMNS": "120"})
        os.close(slave)
        chunks: list[bytes] = []
        read_all(master, chunks)
    finally:
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert "confidence" in terminal and "━" in terminal and "{" not in terminal  # a table, not JSON
    for label, onset, _ in audio["truth"][str(wav)]:
        assert label in terminal and f"{onset:.2f}" in terminal
    piped = cli("file", wav, "--model", cli_case.model)
    assert piped.returncode == 0
    assert [json.loads(line)["label"] for line in piped.stdout.splitlines()] == [
        label for label, _, _ in audio["truth"][str(wav)]]
