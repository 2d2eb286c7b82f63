"""Scaling out (issue 21): ``streamdet batch`` in-process and on Ray Data, ``streamdet serve --ray`` on Ray Serve.

The in-process tests run the band test model (events known exactly, inference in microseconds). The Ray tests
share ONE real local Ray cluster (2 CPUs, started by the ``ray_cluster`` fixture once per session, shut down at
its end), run in one pytest-xdist group (``ray``) and drive the real CLI against it with ``--ray ADDRESS``; they
compare with ``streamdet file`` on the bundled model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from onnx_test_model import scene

from streamdet.scale.parts import read_events
from streamdet.session import BUNDLED_DIR

EXAMPLE = BUNDLED_DIR / "example.wav"
RATE = 16000
RAY_NICENESS = "RAY_worker_niceness"  # Ray config by environment: its workers' nice level above the driver


# --- helpers ----------------------------------------------------------------------------------------------
def file_rows(result: subprocess.CompletedProcess) -> list[dict]:
    """The events of ``streamdet file --format jsonl``, sorted as :func:`read_events` sorts."""
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return sorted(rows, key=lambda r: (r["file"], r["onset"], r["offset"], r["label"]))


def status_rows(out: Path) -> dict[str, dict]:
    """``files.jsonl`` by file."""
    rows = [json.loads(line) for line in (out / "files.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["file"] for r in rows}), "one row per input"
    return {r["file"]: r for r in rows}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Band-model recordings of mixed lengths, rates and channels, plus a corrupt and an empty file."""
    root = tmp_path_factory.mktemp("archive")
    (root / "site1").mkdir()
    (root / "site2" / "deep").mkdir(parents=True)
    sf.write(root / "site1" / "a.wav", scene([("low", 0.5, 1.5), ("high", 2.0, 3.0)], 4.0, RATE), RATE)
    sf.write(root / "site1" / "b.flac", scene([("mid", 1.0, 2.5)], 3.0, RATE), RATE)
    x = scene([("high", 0.2, 0.9), ("low", 1.5, 4.0), ("mid", 6.0, 7.5)], 9.0, 44100)
    sf.write(root / "site2" / "deep" / "c.wav", np.stack([x, 0.5 * x], axis=1), 44100)
    sf.write(root / "site2" / "quiet.wav", np.zeros(RATE, np.float32), RATE)
    (root / "site2" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (root / "site2" / "empty.wav").write_bytes(b"")
    return root


# --- in-process -----------------------------------------------------------------------------------------------
def test_batch_in_process_equals_streamdet_file_and_reports_each_bad_input(cli, band_model, archive, tmp_path):
    out = tmp_path / "out"
    settings = ("--model", band_model, "--hop", "0.25", "--min-gap", "0.3")
    expected = cli("file", archive, *settings, "--format", "jsonl")
    assert expected.returncode == 1  # the corrupt and the empty file
    result = cli("batch", archive, tmp_path / "missing.wav", "-o", out, *settings)
    assert result.returncode == 1, result.stderr
    assert read_events(out) == file_rows(expected) and len(file_rows(expected)) == 6
    rows = status_rows(out)
    assert set(rows) == {str(p) for p in archive.rglob("*.*")} | {str(tmp_path / "missing.wav")}
    ok = {Path(f).name: r for f, r in rows.items() if r["status"] == "ok"}
    assert set(ok) == {"a.wav", "b.flac", "c.wav", "quiet.wav"}
    assert ok["c.wav"]["duration"] == pytest.approx(9.0) and ok["c.wav"]["events"] == 3
    assert ok["quiet.wav"]["events"] == 0 and all(r["compute_seconds"] > 0 for r in ok.values())
    reasons = {Path(f).name: r["reason"] for f, r in rows.items() if r["status"] == "error"}
    assert reasons["missing.wav"] == "no such file or directory"
    assert reasons["empty.wav"] and reasons["corrupt.wav"]  # what `streamdet file` says for them
    for name in ("corrupt.wav", "empty.wav", "missing.wav"):  # each named on stderr too
        assert any(name in line and line.startswith("error:") for line in result.stderr.splitlines())
    assert "7/7 files" in result.stderr and "ETA 0:00:00" in result.stderr
    assert not (out / "status").exists()


def test_batch_resume_skips_what_is_done_and_redoes_what_changed(cli, band_model, archive, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.wav", "b.flac"):
        (src / name).write_bytes((archive / "site1" / name).read_bytes())
    out = tmp_path / "out"
    first = cli("batch", src, "-o", out, "--model", band_model)
    assert first.returncode == 0, first.stderr
    again = cli("batch", src, "-o", out, "--model", band_model)  # the folder holds results: refused
    assert again.returncode == 2 and "--resume" in again.stderr
    before = status_rows(out)
    # a changed file, a new file, and the events of a part whose status never landed (an interrupted run)
    sf.write(src / "a.wav", scene([("mid", 0.5, 1.0)], 2.0, RATE), RATE)
    sf.write(src / "d.wav", scene([("high", 0.5, 1.0)], 2.0, RATE), RATE)
    orphan = out / "events" / "part-0123456789abcdef.jsonl"
    orphan.write_text(json.dumps({"file": "ghost.wav", "label": "low", "onset": 0, "offset": 1,
                                  "confidence": 1}) + "\n")
    resumed = cli("batch", src, "-o", out, "--model", band_model, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: 1 of 3 input(s) already done" in resumed.stderr and "2/2 files" in resumed.stderr
    after = status_rows(out)
    assert after[str(src / "b.flac")] == before[str(src / "b.flac")]  # not redone
    assert after[str(src / "a.wav")]["part"] != before[str(src / "a.wav")]["part"]
    assert not orphan.exists()
    expected = file_rows(cli("file", src, "--model", band_model, "--format", "jsonl"))
    assert read_events(out) == expected and {r["label"] for r in expected if r["file"].endswith("a.wav")} == {"mid"}


def test_batch_inputs_lists_patterns_and_formats(cli, band_model, archive, tmp_path):
    listing = tmp_path / "inputs.txt"
    rel = os.path.relpath(archive / "site1" / "a.wav", tmp_path)
    listing.write_text(f"# recordings\n{rel}\n\n{archive / 'site2' / 'deep'}\n{tmp_path / 'nothing-*.wav'}\n")
    pattern = str(archive / "site1" / "*.flac")
    results = {}
    for fmt in ("jsonl", "tsv", "parquet"):
        out = tmp_path / fmt
        result = cli("batch", listing, pattern, "-o", out, "--model", band_model, "-f", fmt)
        assert result.returncode == 1, result.stderr  # the pattern in the list that matches nothing
        rows = status_rows(out)
        assert [Path(f).name for f, r in rows.items() if r["status"] == "ok"] == ["a.wav", "c.wav", "b.flac"]
        [bad] = [r for r in rows.values() if r["status"] == "error"]
        assert bad["file"].endswith("nothing-*.wav") and bad["reason"] == "the pattern matches no file"
        assert {p.suffix for p in (out / "events").iterdir()} == {"." + fmt}
        results[fmt] = [{k: r[k] for k in ("file", "label", "onset", "offset")} for r in read_events(out)]
    assert len(results["jsonl"]) == 6 and results["jsonl"] == results["tsv"] == results["parquet"]
    assert str(archive / "site1" / "a.wav") in {r["file"] for r in results["jsonl"]}  # the list's relative path


def test_batch_reads_uris_through_pyarrow(cli, band_model, archive, tmp_path):
    site = archive / "site1"
    result = cli("batch", f"file://{site}", f"file://{site}/a.wav", f"file://{tmp_path}/none.wav", "-o",
                 tmp_path / "out", "--model", band_model)
    assert result.returncode == 1, result.stderr
    rows = status_rows(tmp_path / "out")
    assert rows == {**{f"file://{site}/{n}": rows[f"file://{site}/{n}"] for n in ("a.wav", "b.flac")},
                    f"file://{tmp_path}/none.wav": rows[f"file://{tmp_path}/none.wav"]}  # the file named twice: once
    assert rows[f"file://{tmp_path}/none.wav"]["reason"] == "no such file or directory"
    local = file_rows(cli("file", site, "--model", band_model, "--format", "jsonl"))
    assert [{**r, "file": r["file"].removeprefix("file://")} for r in read_events(tmp_path / "out")] == local


def test_a_missing_ray_extra_names_the_pip_command(tmp_path, band_model):
    (tmp_path / "hidden" / "ray").mkdir(parents=True)
    (tmp_path / "hidden" / "ray" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    sf.write(tmp_path / "a.wav", np.zeros(RATE, np.float32), RATE)
    for args in (["batch", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "--ray", "local"],
                 ["serve", "--ray", "local"]):
        hidden = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                                 "from streamdet.cli import main; sys.argv = ['streamdet', *sys.argv[2:]]; main()",
                                 str(tmp_path / "hidden"), *args, "--model", str(band_model)],
                                capture_output=True, text=True, timeout=60)
        assert hidden.returncode == 2, hidden.stderr
        assert 'needs the ray extra: pip install "streamdet[ray]"' in hidden.stderr


def test_import_streamdet_never_imports_ray_or_pyarrow():
    code = ("import sys, streamdet, streamdet.cli.app, streamdet.scale.runtime, streamdet.scale.parts; "
            "print([m for m in ('ray', 'pyarrow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# --- on a real local Ray cluster (one per session, one xdist group) ------------------------------------------
@pytest.fixture(scope="session")
def ray_cluster():
    """A private local Ray cluster with 2 CPUs (``address="local"`` never joins someone else's); yields its
    address for ``--ray``. Shut down (only this cluster's processes) at the end of the session."""
    import logging

    import ray

    # Ray runs its workers 15 nice levels down: on a loaded CI machine (the other xdist workers) they would starve
    niceness = os.environ.get(RAY_NICENESS)
    os.environ[RAY_NICENESS] = "0"
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if niceness is None:
            os.environ.pop(RAY_NICENESS, None)
        else:
            os.environ[RAY_NICENESS] = niceness


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_batch_on_ray_equals_streamdet_file(cli, ray_cluster, tmp_path):
    """The issue's comparison: the bundled model, non-default settings, files of mixed lengths, a corrupt one."""
    src = tmp_path / "src"
    src.mkdir()
    audio, rate = sf.read(EXAMPLE, dtype="float32")
    sf.write(src / "whole.wav", audio, rate)
    sf.write(src / "head.flac", audio[: 7 * rate], rate)
    sf.write(src / "tail.wav", audio[11 * rate :], rate)
    (src / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVE" + bytes(range(200)))
    settings = ("--threshold", "0.6,0.4", "--min-gap", "0.5")
    expected = cli("file", src, *settings, "--format", "jsonl")
    out = tmp_path / "out"
    result = cli("batch", src, "-o", out, "--ray", ray_cluster, "--workers", "2", *settings, timeout=600)
    assert result.returncode == 1, result.stderr  # broken.wav: an error row, the job went on
    assert "on Ray (2 CPUs): 2 worker(s) x 1 thread(s)" in result.stderr
    assert read_events(out) == file_rows(expected) and len(file_rows(expected)) >= 5
    rows = status_rows(out)
    assert {Path(f).name: r["status"] for f, r in rows.items()} == {
        "whole.wav": "ok", "head.flac": "ok", "tail.wav": "ok", "broken.wav": "error"}
    assert rows[str(src / "whole.wav")]["duration"] == 20.0 and "4/4 files" in result.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_batch_on_ray_keeps_a_label_map(cli, ray_cluster, tmp_path):
    """A label map (issue 22) reaches the Ray actors: grouped labels and their own thresholds, events equal to
    ``streamdet file`` with the same map."""
    src = tmp_path / "src"
    src.mkdir()
    audio, rate = sf.read(EXAMPLE, dtype="float32")
    sf.write(src / "whole.wav", audio, rate)
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"bang": {"labels": ["knock", "doorbell"], "threshold": 0.3},
                                     "voice": ["speech"]}))
    expected = file_rows(cli("file", src, "--label-map", label_map, "--format", "jsonl"))
    out = tmp_path / "out"
    result = cli("batch", src, "-o", out, "--ray", ray_cluster, "--workers", "2", "--label-map", label_map,
                 timeout=600)
    assert result.returncode == 0, result.stderr
    assert read_events(out) == expected
    assert {r["label"] for r in expected} == {"bang", "voice"}, expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_serve_on_ray_spreads_streams_over_two_replicas_with_file_mode_events(cli, ray_cluster, tmp_path):
    import httpx

    from streamdet import Detector
    from streamdet.client import stream_file

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*cli.command, "serve", "--ray", ray_cluster, "--replicas", "2", "--port", str(port)],
                              stderr=subprocess.PIPE, text=True, **cli.interruptible)
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core CI machine: Serve and 2 replicas take minutes
        while True:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.poll() else ""
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        expected = sorted((e.label, e.onset, e.offset) for e in Detector(threads=1).detect_file(EXAMPLE))
        def one_stream(i: int) -> list:
            time.sleep(0.3 * i)  # staggered a little, so the router sees the streams already open
            return sorted((u.label, u.onset, u.offset) for u in stream_file(url, EXAMPLE, name=f"s{i}",
                                                                           block_seconds=0.5) if u.type == "offset")

        with ThreadPoolExecutor(4) as pool:  # four concurrent streams
            got = list(pool.map(one_stream, range(4)))
        assert all(g == expected for g in got), (got, expected)
        detected = httpx.post(url + "/v1/detect", content=EXAMPLE.read_bytes(), timeout=60).json()
        assert sorted((e["label"], e["onset"], e["offset"]) for e in detected["events"]) == expected
        seen: dict[str, float] = {}
        for _ in range(40):  # /metrics answers per replica: collect both
            response = httpx.get(url + "/metrics", timeout=10)
            replica = response.headers["x-streamdet-replica"]
            assert f'streamdet_replica_info{{replica="{replica}"}} 1.0' in response.text
            seen[replica] = next(float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines()
                                 if line.startswith('streamdet_audio_seconds_total{source="stream"}'))
            if len(seen) == 2:
                break
        assert len(seen) == 2, seen
        assert sum(seen.values()) == pytest.approx(4 * 20.0) and min(seen.values()) > 0, seen  # spread, 4 streams
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
    assert code == 130
