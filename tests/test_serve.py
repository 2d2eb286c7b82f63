"""``streamdet serve`` (issue 19): the HTTP endpoints, the /v1/stream protocol, limits, faults, metrics and the
Python client, all against a real uvicorn server on a free loopback port (real WebSocket and HTTP clients).

Most tests serve the band-energy test model (events known exactly, inference in microseconds); the ones that
compare with ``streamdet file`` use the bundled model and the bundled example clip."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from onnx_test_model import DEFAULT_BANDS, build_band_model, scene
from serve_helpers import START, SilentReader, drain, open_raw, refused, running_server

import streamdet
from streamdet.client import StreamClient, StreamError, stream, stream_file, stream_url
from streamdet.serve.deps import MissingExtraError, require_serve_extra
from streamdet.session import BUNDLED_DIR

EXAMPLE = BUNDLED_DIR / "example.wav"
RATE = 16000
TRUTH = [("low", 0.5, 1.5), ("mid", 2.0, 3.2), ("high", 3.6, 4.6)]


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    """Five seconds of the band model's three tones (see TRUTH)."""
    return scene(TRUTH, 5.0, RATE)


@pytest.fixture(scope="module")
def band_server(band_model: Path):
    """A shared server on the band model with small limits (the tests that need other limits start their own)."""
    with running_server(band_model, max_streams=8, max_frame_bytes=256 << 10, max_body_bytes=1 << 20,
                        idle_timeout=5.0) as (url, ctx):
        yield url, ctx


def file_events(det: streamdet.Detector, samples: np.ndarray, rate: int, path: Path, subtype: str) -> list:
    """``detect_file`` on ``samples`` written to ``path``: (label, onset, offset, confidence) tuples."""
    sf.write(path, samples, rate, subtype=subtype)
    return sorted(((e.label, e.onset, e.offset, e.confidence) for e in det.detect_file(path)), key=_by_onset)


def stream_events(updates) -> list:
    """The finished events of a list of updates, as (label, onset, offset, confidence) tuples."""
    return sorted(((u.label, u.onset, u.offset, u.confidence) for u in updates if u.type == "offset"), key=_by_onset)


def _by_onset(event: tuple) -> tuple:
    return event[1], event[0]


def same_events(a: list, b: list) -> bool:
    """Equal labels and times, confidences to float32 rounding across batch sizes."""
    return len(a) == len(b) and all(x[:3] == y[:3] and abs(x[3] - y[3]) < 1e-4 for x, y in zip(a, b, strict=True))


# --- packaging ------------------------------------------------------------------------------------
def test_import_streamdet_never_imports_the_server_dependencies():
    code = ("import sys, streamdet, streamdet.cli.app; streamdet.Detector; "
            "print([m for m in ('starlette', 'uvicorn', 'websockets', 'prometheus_client', 'multipart', "
            "'streamdet.serve') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_serve_extra_names_the_pip_command(tmp_path):
    advice = r'no-such-package is not installed; .*pip install "streamdet\[serve\]"'
    with pytest.raises(MissingExtraError, match=advice):
        require_serve_extra({"no_such_module_for_streamdet": "no-such-package"})
    # The CLI with starlette hidden: exit 2 and the same advice.
    (tmp_path / "starlette").mkdir()
    (tmp_path / "starlette" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    hidden = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                             "from streamdet.cli import main; sys.argv = ['streamdet', 'serve']; main()",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert hidden.returncode == 2
    assert 'pip install "streamdet[serve]"' in hidden.stderr


# --- HTTP -------------------------------------------------------------------------------------------
def test_healthz_and_models_describe_the_served_model(band_server, band_model):
    url, _ = band_server
    health = httpx.get(url + "/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": band_model.stem, "streams": 0}
    info = httpx.get(url + "/v1/models").json()["models"][0]
    assert info["labels"] == ["low", "mid", "high"]
    assert (info["sample_rate"], info["window"], info["step"], info["hop"]) == (16000, 1.0, 0.05, 0.5)
    assert info["thresholds"] == {"low": [0.5, 0.3], "mid": [0.5, 0.3], "high": [0.5, 0.3]}
    assert info["postprocessing"] == {"median_filter": 0.0, "min_duration": dict.fromkeys(info["labels"], 0.0),
                                      "min_gap": dict.fromkeys(info["labels"], 0.0)}


def _file_jsonl(cli, *args) -> list:
    result = cli("file", EXAMPLE, "--format", "jsonl", "--device", "cpu", *args)
    assert result.returncode == 0, result.stderr
    return [{k: v for k, v in json.loads(line).items() if k != "file"} for line in result.stdout.splitlines()]


def _close(a: list, b: list) -> bool:
    strip = [[(e["label"], e["onset"], e["offset"]) for e in x] for x in (a, b)]
    return strip[0] == strip[1] and all(abs(x["confidence"] - y["confidence"]) <= 2e-4
                                        for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_detect_equals_streamdet_file_on_the_same_bytes(cli):
    expected = _file_jsonl(cli)
    expected_fine = _file_jsonl(cli, "--hop", "0.25", "--threshold", "0.6,0.4")
    data = EXAMPLE.read_bytes()
    with running_server(None) as (url, _):
        raw = httpx.post(url + "/v1/detect", content=data, headers={"Content-Type": "audio/wav"}, timeout=60)
        form = httpx.post(url + "/v1/detect", files={"file": ("example.wav", data, "audio/wav")}, timeout=60)
        fine = httpx.post(url + "/v1/detect?hop=0.25&threshold=0.6,0.4", content=data, timeout=60)
    assert raw.status_code == form.status_code == fine.status_code == 200
    assert raw.json()["duration"] == 20.0
    assert len(expected) == 5 and _close(raw.json()["events"], expected)
    assert _close(form.json()["events"], expected)
    assert expected_fine != expected and _close(fine.json()["events"], expected_fine)


def test_detect_refuses_bad_and_oversized_audio_with_a_named_problem(band_server, tmp_path):
    url, _ = band_server
    wav = tmp_path / "ok.wav"
    sf.write(wav, scene(TRUTH[:1], 2.0, RATE), RATE)
    good = wav.read_bytes()
    cases = [
        (dict(content=b""), 400, "empty"),
        (dict(content=b"this is not audio at all" * 10), 415, "Format not recognised"),
        (dict(content=good[:44]), 400, "no audio samples"),  # a header without samples
        (dict(content=b"RIFF", headers={"Content-Type": "text/plain"}), 415, "content type 'text/plain'"),
        (dict(content=os.urandom((1 << 20) + 1)), 413, "over the limit of 1048576 bytes"),
        (dict(files={"other": ("a.wav", good)}), 400, "no file field named 'file'"),
        (dict(files={"file": ("big.wav", os.urandom((1 << 20) + 10))}), 413, "over the limit"),
        (dict(content=good, params={"hop": "fast"}), 400, "hop: expected a number"),
        (dict(content=good, params={"threshold": "2"}), 400, "0 <= off <= on <= 1"),
    ]
    for kwargs, status, text in cases:
        answer = httpx.post(url + "/v1/detect", timeout=30, **kwargs)
        assert (answer.status_code, text in answer.json()["error"]) == (status, True), (kwargs.keys(), answer.text)
    chunked = httpx.post(url + "/v1/detect", content=iter([b"x" * (1 << 19)] * 3), timeout=30)  # no Content-Length
    assert chunked.status_code == 413
    assert httpx.post(url + "/v1/detect", content=good, timeout=30).status_code == 200  # still serving


# --- the stream protocol ------------------------------------------------------------------------------
def test_stream_events_equal_detect_file_however_the_frames_are_sized(band_server, band_model, audio, tmp_path):
    url, _ = band_server
    det = streamdet.Detector(band_model, device="cpu", hop=0.5, threads=1)
    stereo = np.stack([audio, 0.5 * audio], axis=1)
    expected_f32 = file_events(det, stereo, RATE, tmp_path / "f.wav", "FLOAT")
    expected_s16 = file_events(det, audio, RATE, tmp_path / "s.wav", "PCM_16")
    assert [e[0] for e in expected_f32] == ["low", "mid", "high"]
    rng = random.Random(0)

    def ragged(x: np.ndarray):
        i = 0
        while i < len(x):
            n = rng.choice([1, 7, 160, 1000, 4321, 16000])
            yield x[i : i + n]
            i += n

    for source, fmt, expected in ((stereo, "f32le", expected_f32), (audio, "s16le", expected_s16)):
        got = stream_events(stream(url, ragged(source), RATE, channels=source.ndim, format=fmt))
        assert same_events(got, expected), (fmt, got, expected)


def test_ready_end_and_scores_at_most_once_per_hop(band_server, audio):
    url, _ = band_server
    with StreamClient(url, sample_rate=RATE, name="meters", scores=True, hop=0.25) as client:
        assert client.ready["type"] == "ready" and client.ready["hop"] == 0.25 and client.ready["stream"] == "meters"
        for i in range(0, len(audio), 800):
            client.send(audio[i : i + 800])
        client.end()
        messages = list(client.messages())
    assert client.close_code == 1000
    scores = [m for m in messages if m["type"] == "scores"]
    updates = [m for m in messages if m["type"] in ("onset", "offset")]
    assert scores and all(set(m["scores"]) == {"low", "mid", "high"} for m in scores)
    times = [m["time"] for m in scores]
    assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(times))
    assert [(m["type"], m["label"]) for m in updates][:2] == [("onset", "low"), ("offset", "low")]
    assert set(updates[0]) == {"type", "label", "onset", "offset", "confidence", "stream"}
    assert updates[0]["stream"] == "meters"


def test_end_closes_open_events_and_lost_audio_keeps_the_clock(band_server):
    url, _ = band_server
    tone = scene([("mid", 0.0, 1.0)], 1.0, RATE)
    with StreamClient(url, sample_rate=RATE, name="gap") as client:
        client.send(np.zeros(RATE, np.float32))
        client.lost(RATE)  # one second lost: silence on the timeline
        client.send(tone)  # the tone is at 2-3 s and still sounding at the end
        client.end()
        updates = list(client.updates())
    [offset] = [u for u in updates if u.type == "offset"]
    assert offset.label == "mid" and abs(offset.onset - 2.0) <= 0.1 and offset.offset == 3.0


def test_streams_with_the_same_settings_share_one_detector_and_batch(band_model, audio):
    with running_server(band_model, batch_interval=0.2) as (url, ctx):
        clients = [StreamClient(url, sample_rate=RATE, name=f"s{i}") for i in range(4)]
        hop = RATE // 2
        for k in range(0, len(audio), hop):  # every stream gets one hop in turn: their windows fall due together
            for c in clients:
                c.send(audio[k : k + hop])
            time.sleep(0.05)
        for c in clients:
            c.end()
            assert c.close_code is None and list(c.updates())
        text = httpx.get(url + "/metrics").text
        assert len(ctx.pool) == 1
    windows = _metric(text, 'streamdet_windows_total{source="stream"}')
    batches = _metric(text, "streamdet_batches_total")
    assert windows == 4 * 10  # 5 s at hop 0.5 on each stream
    assert batches <= windows / 2  # without batching across streams it would be one call per window


def test_a_request_keeps_some_of_the_servers_classes(band_server, band_model, audio, tmp_path):
    """``classes`` per request (issue 22): ``/v1/detect?classes=...`` and the stream's start message get only those
    labels' events, equal to a Detector with the same classes; an unknown label is a 400 / a 1007 close naming
    the server's labels; the server's own detector is untouched."""
    url, _ = band_server
    path = tmp_path / "tones.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    want = sorted((e.label, e.onset, e.offset) for e in
                  streamdet.Detector(band_model, device="cpu", threads=1, classes=["low", "high"]).detect_file(path))
    assert {w[0] for w in want} == {"low", "high"}
    reply = httpx.post(url + "/v1/detect?classes=high,low", content=path.read_bytes(), timeout=60)
    assert reply.status_code == 200, reply.text
    assert sorted((e["label"], e["onset"], e["offset"]) for e in reply.json()["events"]) == want
    client = StreamClient(url, sample_rate=RATE, name="two", classes=["low", "high"])
    assert client.ready["labels"] == ["low", "high"]
    for k in range(0, len(audio), RATE // 4):
        client.send(audio[k : k + RATE // 4])
    client.end()
    assert client.close_code is None
    assert sorted((u.label, u.onset, u.offset) for u in client.updates() if u.type == "offset") == want
    bad = httpx.post(url + "/v1/detect?classes=low,siren", content=path.read_bytes(), timeout=60)
    assert bad.status_code == 400 and "'siren'" in bad.json()["error"] and "low, mid, high" in bad.json()["error"]
    with pytest.raises(StreamError) as refused_stream:
        StreamClient(url, sample_rate=RATE, classes="low,nope")
    assert refused_stream.value.code == 1007 and "'nope'" in refused_stream.value.message
    everything = httpx.post(url + "/v1/detect", content=path.read_bytes(), timeout=60).json()["events"]
    assert {e["label"] for e in everything} == {"low", "mid", "high"}


def _metric(text: str, name: str) -> float:
    return float(next(line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name + " ")))


# --- faults: each one closes only its own stream ----------------------------------------------------------
def _healthy_stream(url: str, audio: np.ndarray, result: list) -> threading.Thread:
    """A stream in real time (about 2.5 s) beside the faulty ones; ``result`` gets its events."""

    def run() -> None:
        result.append(stream_events(stream(url, audio[: len(audio) // 2], RATE, block_seconds=0.25, realtime=True,
                                           name="healthy")))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("first, code, text", [
    ("{not json", 1007, "malformed JSON"),
    ("[1, 2]", 1007, "expected a JSON object"),
    (json.dumps({"sample_rate": 16000, "format": "mp3"}), 1003, 'unknown format "mp3"'),
    (json.dumps({"sample_rate": 0}), 1007, "sample_rate must be an integer from 1000 to 384000, got 0"),
    (json.dumps({"sample_rate": "16k"}), 1007, 'sample_rate must be an integer from 1000 to 384000, got "16k"'),
    (json.dumps({"sample_rate": 44100.5}), 1007, "sample_rate must be an integer"),
    (json.dumps({"channels": 1}), 1007, "needs sample_rate"),
    (json.dumps({"sample_rate": 16000, "channels": 0}), 1007, "channels must be an integer"),
    (json.dumps({"sample_rate": 16000, "thresholds": {"nope": 0.5}}), 1007, "unknown label 'nope'"),
    (json.dumps({"sample_rate": 16000, "thresholds": [0.2, 0.9]}), 1007, "0 <= off <= on <= 1"),
    (b"\x00\x00\x80\x3f", 1003, "got a binary message"),
])
def test_a_bad_start_message_gets_an_error_and_its_close_code(band_server, first, code, text):
    url, _ = band_server
    close, messages = refused(url, first)
    assert close == code
    assert [m["type"] for m in messages] == ["error"] and text in messages[0]["message"]


def test_faults_after_the_start_close_only_that_stream(band_server, band_model, audio, tmp_path):
    url, _ = band_server
    det = streamdet.Detector(band_model, device="cpu", hop=0.5, threads=1)
    result: list = []
    healthy = _healthy_stream(url, audio, result)
    s16 = json.dumps({"sample_rate": 16000, "channels": 1, "format": "s16le", "name": "odd"})
    stereo = json.dumps({"sample_rate": 16000, "channels": 2, "format": "f32le", "name": "stereo"})
    faults = [
        (s16, b"\x01\x02\x03", 1007, "3 bytes is not a whole number of s16le frames"),
        (stereo, np.zeros(3, "<f4").tobytes(), 1007, "2 channel(s) x 4 bytes = 8 bytes each"),
        (START, "{oops", 1007, "malformed JSON"),
        (START, json.dumps({"type": "pause"}), 1003, 'unknown message type "pause"'),
        (START, json.dumps({"type": "lost", "frames": -5}), 1007, "lost needs frames"),
        (START, b"\x00" * ((256 << 10) + 4), 1009, None),  # over --max-frame: uvicorn refuses it unread
    ]
    for start, bad, code, text in faults:
        ws = open_raw(url)
        ws.send(start)
        assert json.loads(ws.recv(10))["type"] == "ready"
        ws.send(np.zeros(800, "<i2" if "s16le" in start else "<f4").tobytes())
        ws.send(bad)
        messages = drain(ws)
        assert ws.close_code == code, (bad[:20], ws.close_code, messages)
        if text is not None:
            assert messages[-1]["type"] == "error" and text in messages[-1]["message"]
    healthy.join(30)
    half = audio[: len(audio) // 2]
    assert result and same_events(result[0], file_events(det, half, RATE, tmp_path / "h.wav", "FLOAT"))


@pytest.mark.filterwarnings("ignore::streamdet.audio_io.NonFiniteSamplesWarning")
def test_nan_samples_are_zeroed_with_one_warning_and_the_stream_goes_on(band_server, band_model, audio, tmp_path):
    url, _ = band_server
    det = streamdet.Detector(band_model, device="cpu", hop=0.5, threads=1)
    dirty = audio.copy()
    dirty[100:300] = np.nan  # in the silence before the first tone
    dirty[200:250] = np.inf
    with StreamClient(url, sample_rate=RATE, name="nan") as client:
        for i in range(0, len(dirty), 1600):
            client.send(dirty[i : i + 1600])
        client.end()
        messages = list(client.messages())
    warnings = [m for m in messages if m["type"] == "warning"]
    assert len(warnings) == 1 and "200 NaN/inf sample(s) replaced by 0" in warnings[0]["message"]
    got = sorted(((m["label"], m["onset"], m["offset"]) for m in messages if m["type"] == "offset"), key=_by_onset)
    assert got == [e[:3] for e in file_events(det, audio, RATE, tmp_path / "c.wav", "FLOAT")]
    assert client.close_code == 1000


def test_a_vanished_client_frees_its_stream(band_server, audio):
    url, ctx = band_server
    ws = open_raw(url)
    ws.send(START)
    assert json.loads(ws.recv(10))["type"] == "ready"
    ws.send(audio[: RATE * 2].tobytes())
    deadline = time.monotonic() + 10
    while not ctx.hub.sessions or next(iter(ctx.hub.sessions)).stream.windows == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    [session] = ctx.hub.sessions
    engine_stream = weakref.ref(session.stream)
    del session
    ws.socket.shutdown(socket.SHUT_RDWR)  # gone without a close frame
    ws.socket.close()
    deadline = time.monotonic() + 10
    while engine_stream() is not None or httpx.get(url + "/healthz").json()["streams"]:
        assert time.monotonic() < deadline, "the vanished stream is still held"
        gc.collect()
        time.sleep(0.05)
    assert ctx.connections == 0
    assert 'streamdet_errors_total{kind="vanished"}' in httpx.get(url + "/metrics").text


def test_a_slow_reader_loses_scores_but_never_updates(audio, tmp_path):
    # A band model with 0.1 s windows (cheap: an inference round per message) and 100 silent bands besides the
    # three (a scores message is ~1.7 kB): the server's socket and transport buffers (~70 kB here) fill after a
    # few dozen scores messages while the client reads nothing.
    quiet = {f"quiet{i}": (4000.0 + 38 * i, 4038.0 + 38 * i) for i in range(100)}
    model = build_band_model(tmp_path / "wide.onnx", window_samples=1600, steps=4, bands={**DEFAULT_BANDS, **quiet})
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # accepted sockets inherit small buffers
    long = np.tile(audio, 6)  # 30 s: 6 rounds of the three tones
    hop = 400  # samples: 0.025 s
    det = streamdet.Detector(model, device="cpu", hop=hop / RATE, threads=1)
    expected = file_events(det, long, RATE, tmp_path / "long.wav", "FLOAT")
    with running_server(model, det, sock=listener, send_queue=16, batch_interval=0.0) as (url, _):
        client = SilentReader(url)
        client.send(json.dumps({"sample_rate": RATE, "name": "slow", "scores": True, "hop": hop / RATE}))
        for i in range(0, len(long), hop):  # one hop per message: up to a scores message each
            client.send(long[i : i + hop].tobytes())
            time.sleep(0.001)
        client.send(json.dumps({"type": "end"}))
        messages = client.read_all()
        dropped = _metric(httpx.get(url + "/metrics").text, 'streamdet_dropped_messages_total{type="scores"}')
    assert client.close_code == 1000
    got = sorted(((m["label"], m["onset"], m["offset"], m["confidence"]) for m in messages if m["type"] == "offset"),
                 key=_by_onset)
    assert same_events(got, expected) and len(got) == 18  # every update arrived
    assert dropped > 10  # scores were dropped for it
    assert len([m for m in messages if m["type"] == "scores"]) + dropped <= len(long) / hop


def test_a_flood_of_tiny_frames_gives_the_same_events(band_server, band_model, audio, tmp_path):
    url, _ = band_server
    det = streamdet.Detector(band_model, device="cpu", hop=0.5, threads=1)
    pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2")
    expected = file_events(det, pcm, RATE, tmp_path / "tiny.wav", "PCM_16")
    result: list = []
    healthy = _healthy_stream(url, audio, result)
    t0 = time.monotonic()
    got = stream_events(stream(url, (pcm[i : i + 4] for i in range(0, len(pcm), 4)), RATE, format="s16le"))
    assert same_events(got, expected)  # 20 000 messages of 4 samples
    assert time.monotonic() - t0 < 60
    healthy.join(30)
    assert result and len(result[0]) == 2


def test_more_streams_than_allowed_are_refused_until_one_ends(band_model, audio):
    with running_server(band_model, max_streams=2) as (url, _):
        first = [StreamClient(url, sample_rate=RATE, name=f"n{i}") for i in range(2)]
        code, messages = refused(url, START)
        assert code == 1013 and "limit of 2 streams" in messages[0]["message"]
        first[0].send(audio[:RATE])
        first[0].end()
        list(first[0].updates())
        third = StreamClient(url, sample_rate=RATE, name="third")  # a slot is free again
        third.end()
        assert list(third.updates()) == [] and third.close_code == 1000
        first[1].close()
        assert 'streamdet_errors_total{kind="too_many_streams"} 1.0' in httpx.get(url + "/metrics").text


def test_an_idle_stream_is_closed(band_model):
    with running_server(band_model, idle_timeout=0.5) as (url, _):
        ws = open_raw(url)
        ws.send(START)
        t0 = time.monotonic()
        messages = drain(ws)
        assert ws.close_code == 1008 and "no message for 0.5 s (idle timeout)" in messages[-1]["message"]
        assert 0.4 < time.monotonic() - t0 < 5
        assert refused(url, None)[0] == 1008  # not even a start message


# --- authentication ---------------------------------------------------------------------------------
def test_with_a_token_every_endpoint_but_healthz_needs_it(band_model, audio):
    token = "s3cret-token"
    bearer = {"Authorization": f"Bearer {token}"}
    with running_server(band_model, token=token) as (url, _):
        assert httpx.get(url + "/healthz").status_code == 200
        for path in ("/v1/models", "/metrics", "/"):
            assert httpx.get(url + path).status_code == 401, path
            assert httpx.get(url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
            assert httpx.get(url + path, headers=bearer).status_code == 200, path
        assert httpx.get(url + f"/?token={token}").status_code == 200
        denied = httpx.post(url + "/v1/detect", content=b"x")
        assert denied.status_code == 401 and "Bearer" in denied.json()["error"]
        code, messages = refused(url, START)
        assert code == 1008 and "missing or wrong token" in messages[0]["message"]
        assert refused(url, START, query="?token=nope")[0] == 1008
        for kwargs in ({"token": token}, {}):
            target = url if kwargs else stream_url(url, token)
            with StreamClient(target, sample_rate=RATE, **kwargs) as client:
                client.send(audio[: RATE // 2])
                client.end()
                assert list(client.updates()) == [] and client.close_code == 1000
        with pytest.raises(StreamError, match="missing or wrong token") as refusal:
            StreamClient(url, sample_rate=RATE, token="nope")
        assert refusal.value.code == 1008


# --- metrics -------------------------------------------------------------------------------------------
def test_metrics_count_streams_audio_windows_events_lost_audio_and_errors(band_model, audio):
    with running_server(band_model) as (url, _):
        with StreamClient(url, sample_rate=RATE) as client:
            client.send(audio)
            client.lost(RATE // 2)
            live = httpx.get(url + "/metrics").text
            client.end()
            list(client.updates())
        refused(url, "{bad")
        text = httpx.get(url + "/metrics").text
    assert "streamdet_open_streams 1.0" in live
    assert "streamdet_open_streams 0.0" in text
    assert _metric(text, 'streamdet_audio_seconds_total{source="stream"}') == pytest.approx(5.0)
    assert _metric(text, 'streamdet_windows_total{source="stream"}') == 11  # 5.5 s (0.5 s lost) at hop 0.5
    assert _metric(text, "streamdet_batches_total") >= 1
    assert _metric(text, "streamdet_inference_seconds_count") >= 1
    assert _metric(text, "streamdet_lost_audio_seconds_total") == 0.5
    for label in ("low", "mid", "high"):
        assert _metric(text, f'streamdet_events_total{{label="{label}"}}') == 1
    assert _metric(text, 'streamdet_errors_total{kind="malformed_json"}') == 1


# --- the command --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_serve_command_token_from_the_environment_and_ctrl_c(cli, band_model):
    env = {**os.environ, "STREAMDET_TOKEN": "from-env"}
    process = subprocess.Popen([*cli.command, "serve", "--port", "0", "--model", band_model, "--device", "cpu"],
                               stderr=subprocess.PIPE, text=True, env=env, **cli.interruptible)
    try:
        lines = []
        while not any("serving on" in line for line in lines):
            line = process.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = lines[-1].split("serving on ")[1].split("/ ")[0]
        assert url.startswith("http://127.0.0.1:") and "token required" in lines[-1]
        assert httpx.get(url + "/healthz").json()["status"] == "ok"
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    busy = socket.create_server(("127.0.0.1", 0))
    taken = cli("serve", "--port", busy.getsockname()[1], "--model", band_model, "--device", "cpu")
    busy.close()
    assert taken.returncode == 1 and "cannot listen on 127.0.0.1" in taken.stderr
    usage = cli("serve", "--max-streams", "0", "--model", band_model)
    assert usage.returncode == 2 and "--max-streams must be at least 1" in usage.stderr


# --- the client -------------------------------------------------------------------------------------------
def test_client_streams_a_file_in_real_time_like_streamdet_file(band_server, band_model, audio, tmp_path):
    url, _ = band_server
    det = streamdet.Detector(band_model, device="cpu", hop=0.5, threads=1)
    path = tmp_path / "clip.flac"
    sf.write(path, audio, RATE, subtype="PCM_24")
    expected = sorted((e.label, e.onset, e.offset) for e in det.detect_file(path))
    t0 = time.monotonic()
    got = sorted((u.label, u.onset, u.offset) for u in stream_file(url, path, realtime=True, block_seconds=0.5)
                 if u.type == "offset")
    assert got == expected and time.monotonic() - t0 >= 4.5
    assert stream_url("http://h:1") == "ws://h:1/v1/stream"
    assert stream_url("https://h/x/v1/stream", token="t") == "wss://h/x/v1/stream?token=t"


def test_the_send_queue_drops_the_oldest_scores_first_and_never_an_update():
    from streamdet.serve.send_queue import SendQueue

    dropped: list = []
    queue = SendQueue(3, on_drop=dropped.append)
    for message in ({"type": "scores", "time": 0.5}, {"type": "onset"}, {"type": "scores", "time": 1.0},
                    {"type": "offset"}, {"type": "onset"}, {"type": "scores", "time": 1.5}, {"type": "offset"}):
        queue.put(message)
    assert [m["time"] for m in dropped] == [0.5, 1.0, 1.5]
    assert len(queue) == 4 and not queue.overflowed
    for _ in range(9):
        queue.put({"type": "onset"})
    assert queue.overflowed  # 13 updates > 4 x 3: the connection closes such a client (1008)

    async def everything() -> list:
        return [(await queue.get())["type"] for _ in range(len(queue))]

    assert asyncio.run(everything()) == ["onset", "offset", "onset", "offset"] + ["onset"] * 9  # in order
