"""Several streams in one `streamdet listen` (issue 20): repeatable named audio inputs (`-i mic=pulse -i ...`)
beside `--url` sources, all on one detector whose live scheduler evaluates their due windows in one batched
call. The live test plays a scene into a real PulseAudio null sink and a recording through `--url` at once."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from loopback_servers import Mosquitto, Subscriber
from test_cli_listen import Lines

import streamdet
from streamdet.sources import SourceGroup


def test_audio_inputs_and_sources_share_inference_calls(tmp_path: Path) -> None:
    """One scheduler cycle evaluates the due windows of an audio input and of a network/file source in one
    call: the input here delivers silence, the source a recording, and one call holds windows of both."""
    audio, sr = sf.read(Path(streamdet.__file__).parent / "bundled" / "example.wav", dtype="float32")
    clip = tmp_path / "clip.wav"
    sf.write(clip, audio[: 4 * sr], sr)
    det = streamdet.Detector(device="cpu", threads=1)
    scheduler = det.live_scheduler()
    scheduler.autostart = False  # this test runs the cycles itself
    calls: list[np.ndarray] = []
    run = scheduler.runner

    def recording_runner(batch: np.ndarray):
        calls.append(batch.copy())
        return run(batch)

    scheduler.runner = recording_runner
    live = det.listen(None, sample_rate=det.sample_rate, name="mic", open_device=False).start()
    group = SourceGroup(det, [f"rec={clip}"]).start()  # played in real time
    try:
        deadline = time.monotonic() + 20
        while group.readers["rec"]._pushed < 2.6 * sr:  # the reader has decoded more than one window
            assert time.monotonic() < deadline, group.stats()
            time.sleep(0.05)
        silence = np.zeros((int(2.6 * det.sample_rate), 1), np.float32)
        live.capture(silence, len(silence), None, None)
        scheduler.cycle()
    finally:
        group.close()
        live.close()
    assert calls, "the cycle evaluated nothing"
    first = calls[0]
    silent = [bool(np.all(row == 0)) for row in first]
    assert any(silent) and not all(silent), [float(np.abs(row).max()) for row in first]  # both streams, one call
    assert group.streams["rec"].windows >= 2 and live.stream.windows >= 2


@pytest.mark.live
@pytest.mark.slow
def test_two_named_inputs_and_a_url_in_one_listen(cli, cli_case, pulse_sink: str, tmp_path: Path) -> None:
    """`listen -i mic=pulse -i mic2=pulse --url rec=FILE`: both inputs hear the scene played into the null sink
    (onsets at their true wall times), the recording gives file mode's events, every update names its stream,
    the summary has a line per stream, and `--mqtt` publishes every stream's updates under its name. Before,
    `--input` took one value and `--url` refused any input."""
    spec = [(0, 0.5, 1.0), (1, 2.0, 1.0), (2, 3.3, 0.8)]
    x, truth = cli_case.scene(spec, 4.5, 48000)
    wav = tmp_path / "scene.wav"
    sf.write(wav, x, 48000)
    rec = tmp_path / "rec.wav"
    sf.write(rec, x[: 3 * 48000], 48000)  # the first two events, played in real time by the url source
    broker = Mosquitto(tmp_path)
    subscriber = Subscriber(broker.url, topic="streamdet/#")
    env = {**os.environ, "PULSE_SOURCE": f"{pulse_sink}.monitor"}
    proc = subprocess.Popen([*cli.command, "listen", "-i", "mic=pulse", "--input", "mic2=pulse", "--url",
                             f"rec={rec}", "--model", str(cli_case.model), "--format", "jsonl", "--hop", "0.25",
                             "--duration", "6.5", "--mqtt", broker.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **cli.interruptible)
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        err.wait_for(lambda line: line.startswith("listening to mic=input pulse, mic2=input pulse, rec="), 30)
    except AssertionError:
        proc.kill()
        broker.stop()
        raise
    time.sleep(0.6)  # PortAudio's input timestamps settle during the device's first few hundred ms
    played = time.time()
    subprocess.run(["paplay", "-d", pulse_sink, str(wav)], check=True, timeout=30)
    try:
        assert proc.wait(timeout=30) == 0, "".join(err.rest())
        messages = subscriber.wait_for(lambda ms: ms and ms[-1].payload == "offline")
    finally:
        subscriber.stop()
        broker.stop()
    items = [json.loads(line) for line in out.rest()]
    updates = [u for u in items if "label" in u]
    assert {u["stream"] for u in updates} == {"mic", "mic2", "rec"}, items
    for name in ("mic", "mic2"):
        onsets = [u for u in updates if u["stream"] == name and u["type"] == "onset"]
        assert [u["label"] for u in onsets] == [label for label, _, _ in truth], (name, updates)
        for u, (_, on, _) in zip(onsets, truth, strict=True):
            assert abs(u["wall_time"] - played - on) <= 0.5, (name, u, on)
    det = streamdet.Detector(cli_case.model, device="cpu", threads=1, hop=0.25)
    want = sorted((e.label, e.onset, e.offset) for e in det.detect_file(rec))
    got = sorted((u["label"], u["onset"], u["offset"]) for u in updates if u["stream"] == "rec" and
                 u["type"] == "offset")
    assert [g[0] for g in got] == [w[0] for w in want] and len(want) == 2, (got, want)
    for g, w in zip(got, want, strict=True):
        assert abs(g[1] - w[1]) <= 0.25 + 1e-9 and abs(g[2] - w[2]) <= 0.25 + 1e-9, (g, w)
    assert [i["type"] for i in items if i.get("stream") == "rec" and "label" not in i] == ["connected", "ended"]
    for name in ("mic", "mic2", "rec"):
        assert [m.json() for m in messages if m.topic == f"streamdet/{name}/events"] == [
            u for u in updates if u["stream"] == name], name
    summary = "".join(err.rest())
    assert "0 dropped" in summary, summary
    for name in ("mic", "mic2"):
        assert f"{name}: listened " in summary and "overflow(s)" in summary, summary
    assert "rec: listened " in summary, summary


def test_an_input_that_stops_ends_alone_and_the_others_go_on(cli_case, monkeypatch, tmp_path: Path) -> None:
    """An audio input that stops delivering audio ends with an error (exit 1 at the end) while a --url source
    beside it plays to its end; the input's open events are closed."""
    from typer.testing import CliRunner

    from streamdet.cli import app, listen_cmd

    x, _ = cli_case.scene([(0, 0.3, 5.0)], 1.5, 16000)  # an event still open when the input stops
    rec = tmp_path / "rec.wav"
    sf.write(rec, cli_case.scene([(1, 0.5, 1.0)], 2.5, 16000)[0], 16000)

    def fake_listen(self, device, **kw):
        live = streamdet.live.LiveStream(self.stream(16000, name=kw["name"]), self.live_scheduler(), open_device=False)
        live.capture(x[:, None], len(x), None, None)  # 1.5 s, then nothing: the device stalled
        return live

    monkeypatch.setattr(listen_cmd, "STALL_SECONDS", 0.5)
    monkeypatch.setattr(streamdet.Detector, "listen", fake_listen)
    result = CliRunner().invoke(app, ["listen", "-i", "mic=fake", "--url", f"rec={rec}", "--model",
                                      str(cli_case.model), "--format", "jsonl", "--hop", "0.25"])
    items = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1, (result.stdout, result.stderr)
    mic = [i for i in items if i["stream"] == "mic"]
    assert [(i["type"], i.get("label")) for i in mic] == [("onset", "low"), ("offset", "low"), ("ended", None)], mic
    assert "no audio from the device" in mic[-1]["reason"]
    rec_events = [i for i in items if i["stream"] == "rec" and i["type"] == "offset"]
    assert [i["label"] for i in rec_events] == ["mid"], items  # the recording played to its end
    assert "mic: listened 1.5 s" in result.stderr and "failed: no audio from the device" in result.stderr

