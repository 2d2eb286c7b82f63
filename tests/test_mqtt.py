"""MQTT and Home Assistant publishing (issue 20) against a real Mosquitto broker started on a free loopback
port and a real paho-mqtt subscriber: discovery configs, states and events arrive in order; a broker
restart mid-stream loses nothing within the queue limit; past the limit the oldest are dropped and counted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback_servers import Mosquitto, Subscriber, free_port

import streamdet
from streamdet.integrations.mqtt import BrokerAddress, MqttPublisher, Topics, discovery_messages, update_messages

EXAMPLE = Path(streamdet.__file__).parent / "bundled" / "example.wav"
LABELS = ["alarm", "siren", "phone_ring", "doorbell", "knock", "car_horn", "speech"]


@pytest.fixture(scope="module")
def example_updates() -> list[streamdet.Update]:
    """The updates of the bundled model on the bundled example (file mode: 5 events, 10 updates)."""
    det = streamdet.Detector(device="cpu", threads=1)
    run = det.open_file(EXAMPLE, name="cam1")
    return list(run)


@pytest.fixture
def broker(tmp_path: Path):
    """A Mosquitto broker on a free loopback port (stopped at the end)."""
    server = Mosquitto(tmp_path)
    yield server
    server.stop()


def expected_update_messages(updates) -> list[tuple[str, str]]:
    """(topic, payload) of the state and event messages of ``updates``, in order."""
    topics = Topics()
    return [(m.topic, m.payload) for u in updates for m in update_messages(topics, u)]


def update_traffic(messages) -> list[tuple[str, str]]:
    """The state and event messages among what a subscriber got (not discovery, status or the initial OFFs)."""
    out: list[tuple[str, str]] = []
    for m in messages:
        if m.topic.startswith("streamdet/cam1/") and (out or m.payload != "OFF"):
            out.append((m.topic, m.payload))
    return out


# --- topics and discovery configs -------------------------------------------------------------------
def test_broker_urls() -> None:
    assert BrokerAddress.parse("mqtt://broker.lan") == BrokerAddress("broker.lan", 1883)
    assert BrokerAddress.parse("mqtts://u%40x:p%3Aw@broker.lan:9000") == BrokerAddress("broker.lan", 9000, "u@x",
                                                                                        "p:w", tls=True)
    assert BrokerAddress.parse("mqtts://broker.lan").port == 8883
    with pytest.raises(ValueError, match="mqtt:// or mqtts://"):
        BrokerAddress.parse("http://broker.lan")


def test_home_assistant_discovery_configs() -> None:
    messages = discovery_messages(Topics("streamdet", "homeassistant"), "front door", LABELS, "alerts.onnx")
    assert len(messages) == len(LABELS) + 1 and all(m.retain for m in messages)
    knock = json.loads(messages[LABELS.index("knock")].payload)
    assert messages[LABELS.index("knock")].topic == "homeassistant/binary_sensor/streamdet_front_door/knock/config"
    assert knock["device_class"] == "sound"
    assert knock["unique_id"] == "streamdet_front_door_knock"
    assert knock["state_topic"] == "streamdet/front_door/knock"
    assert (knock["payload_on"], knock["payload_off"]) == ("ON", "OFF")
    assert knock["availability_topic"] == "streamdet/status"
    assert (knock["payload_available"], knock["payload_not_available"]) == ("online", "offline")
    assert knock["device"]["identifiers"] == ["streamdet_front_door"] and knock["device"]["model"] == "alerts.onnx"
    event = json.loads(messages[-1].payload)
    assert messages[-1].topic == "homeassistant/event/streamdet_front_door/sound/config"
    assert event["event_types"] == LABELS and event["state_topic"] == "streamdet/front_door/events"
    assert event["device"] == knock["device"]  # one device per stream
    assert len({json.loads(m.payload)["unique_id"] for m in messages}) == len(messages)


# --- a real broker ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_example_reaches_a_real_subscriber_in_order(broker: Mosquitto, example_updates) -> None:
    subscriber = Subscriber(broker.url)
    publisher = MqttPublisher(broker.url, LABELS, model="alerts.onnx").start()
    try:
        publisher.add_stream("cam1")
        for update in example_updates:
            publisher(update)
        assert publisher.wait_sent(15)
        got = subscriber.wait_for(lambda ms: len(update_traffic(ms)) >= 2 * len(example_updates))
    finally:
        publisher.close()
    assert publisher.stats()["dropped"] == 0
    assert publisher.stats()["sent"] == len(LABELS) + 2 * len(example_updates)
    assert update_traffic(got) == expected_update_messages(example_updates)
    topics = [m.topic for m in got]
    # Availability first, then the discovery configs, then the initial OFF states, then the updates.
    assert got[0].topic == "streamdet/status" and got[0].payload == "online"
    configs = [m for m in got if m.topic.startswith("homeassistant/")]
    assert len(configs) == len(LABELS) + 1
    first_update = topics.index("streamdet/cam1/events")
    assert max(topics.index(m.topic) for m in configs) < first_update
    onset = json.loads(got[first_update].payload)
    assert onset == example_updates[0].to_dict() and onset["type"] == "onset"
    assert got[first_update - 1].topic == f"streamdet/cam1/{onset['label']}" and got[first_update - 1].payload == "ON"
    # Closing publishes offline (retained), so Home Assistant marks the entities unavailable.
    last = subscriber.wait_for(lambda ms: ms[-1].topic == "streamdet/status")[-1]
    assert last.payload == "offline"
    subscriber.stop()
    # What a client arriving later (Home Assistant after a restart) gets: the retained configs, states and status.
    late = Subscriber(broker.url, name="late")
    retained = late.wait_for(lambda ms: len(ms) >= len(configs) + len(LABELS) + 1)
    late.stop()
    assert all(m.retain for m in retained)
    assert {m.topic: m.payload for m in retained if m.topic.startswith("homeassistant/")} == {
        m.topic: m.payload for m in configs}
    assert {m.topic: m.payload for m in retained if m.topic.startswith("streamdet/cam1/")} == {
        f"streamdet/cam1/{label}": "OFF" for label in LABELS}
    assert {m.topic: m.payload for m in retained if m.topic == "streamdet/status"} == {"streamdet/status": "offline"}


@pytest.mark.slow
def test_broker_restart_mid_stream_loses_nothing_within_the_queue_limit(broker: Mosquitto, example_updates) -> None:
    subscriber = Subscriber(broker.url)
    publisher = MqttPublisher(broker.url, LABELS, queue_limit=100).start()
    half = len(example_updates) // 2
    try:
        publisher.add_stream("cam1")
        for update in example_updates[:half]:
            publisher(update)
        assert publisher.wait_sent(15)
        broker.stop()
        deadline = time.monotonic() + 10
        while publisher.stats()["connected"]:
            assert time.monotonic() < deadline, "the publisher did not notice the broker going away"
            time.sleep(0.05)
        for update in example_updates[half:]:  # detection goes on while the broker is away
            publisher(update)
        waiting = publisher.stats()
        assert waiting["queued"] == 2 * (len(example_updates) - half) and waiting["dropped"] == 0
        broker.start()
        assert publisher.wait_sent(30), publisher.stats()
        got = subscriber.wait_for(lambda ms: len(update_traffic(ms)) >= 2 * len(example_updates), timeout=30)
    finally:
        publisher.close()
        subscriber.stop()
    stats = publisher.stats()
    assert stats["dropped"] == 0 and stats["connections"] == 2
    # Everything arrived once, in order (QoS 1 allows a duplicate of a message in flight at the restart).
    traffic = update_traffic(got)
    deduplicated = [m for i, m in enumerate(traffic) if i == 0 or m != traffic[i - 1]]
    assert deduplicated == expected_update_messages(example_updates)


@pytest.mark.slow
def test_past_the_queue_limit_the_oldest_are_dropped_and_counted(tmp_path: Path, example_updates) -> None:
    port = free_port()  # no broker yet: everything waits in the queue
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{port}", LABELS, queue_limit=6, discovery_prefix=None).start()
    broker = None
    try:
        publisher.add_stream("cam1")  # 7 initial OFF states
        for update in example_updates:  # 20 more messages
            publisher(update)
        stats = publisher.stats()
        assert stats == {**stats, "queued": 6, "dropped": len(LABELS) + 2 * len(example_updates) - 6, "sent": 0}
        broker = Mosquitto(tmp_path, port)  # the broker comes up on the port the publisher keeps trying
        assert publisher.wait_sent(30), publisher.stats()
        kept = expected_update_messages(example_updates)[-6:]
        states = {t: p for t, p in kept if not t.endswith("/events")}
        subscriber = Subscriber(broker.url)  # after the sending: it gets the retained states
        got = subscriber.wait_for(lambda ms: len({m.topic for m in ms if m.topic in states}) == len(states))
        subscriber.stop()
    finally:
        publisher.close()
        if broker is not None:
            broker.stop()
    # The retained states show what was kept: the newest messages (a stale ON would be wrong now).
    assert publisher.stats()["sent"] == 6
    retained = {m.topic: m.payload for m in got if m.retain and m.topic.startswith("streamdet/cam1/")}
    assert retained == states


@pytest.mark.slow
def test_listen_url_publishes_to_mqtt(cli, broker: Mosquitto, tmp_path: Path) -> None:
    import soundfile as sf

    audio, sr = sf.read(EXAMPLE, dtype="float32")
    clip = tmp_path / "door.wav"
    sf.write(clip, audio[: 3 * sr], sr)
    subscriber = Subscriber(broker.url)
    result = cli("listen", "--url", f"door={clip}", "--mqtt", broker.url, "--mqtt-prefix", "home",
                 "--mqtt-discovery-prefix", "ha", "--format", "jsonl", timeout=60)
    assert result.returncode == 0, result.stderr
    got = subscriber.wait_for(lambda ms: ms and ms[-1].payload == "offline")
    subscriber.stop()
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    onsets = [d for d in lines if d["type"] == "onset"]
    assert onsets, result.stdout
    events = [m.json() for m in got if m.topic == "home/door/events"]
    assert events == [d for d in lines if d["type"] in ("onset", "offset")]
    assert any(m.topic == "ha/binary_sensor/home_door/knock/config" for m in got)
    assert [m.payload for m in got if m.topic == "home/status"] == ["online", "offline"]
    assert "mqtt mqtt://127.0.0.1" in result.stderr and "0 dropped" in result.stderr


def test_missing_paho_names_the_mqtt_extra() -> None:
    code = ("import sys; sys.modules['paho'] = None\n"
            "from streamdet.cli import main\n"
            "sys.argv = ['streamdet', 'listen', '--mqtt', 'mqtt://127.0.0.1:1', '--duration', '1']\n"
            "main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert 'pip install "streamdet[mqtt]"' in result.stderr


@pytest.mark.live
@pytest.mark.slow
def test_listen_device_publishes_to_mqtt(cli, cli_case, pulse_sink: str, broker: Mosquitto, tmp_path: Path) -> None:
    """The PortAudio input publishes through the same sink (a scene played into a PulseAudio null sink)."""
    import os

    import soundfile as sf

    audio, truth = cli_case.scene([(0, 0.5, 1.0), (1, 2.0, 1.0)], 3.5, 48000)
    wav = tmp_path / "scene.wav"
    sf.write(wav, audio, 48000)
    subscriber = Subscriber(broker.url)
    env = {**os.environ, "PULSE_SOURCE": f"{pulse_sink}.monitor"}
    proc = subprocess.Popen([*cli.command, "listen", "--input", "pulse", "--model", str(cli_case.model), "--hop",
                             "0.25", "--format", "jsonl", "--duration", "6", "--mqtt", broker.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:  # the model loads and the device starts
        if line.startswith("listening on"):
            break
    time.sleep(0.6)  # PortAudio's input timestamps settle during the device's first few hundred ms
    subprocess.run(["paplay", "-d", pulse_sink, str(wav)], check=True, timeout=30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    got = subscriber.wait_for(lambda ms: ms and ms[-1].payload == "offline")
    subscriber.stop()
    updates = [json.loads(line) for line in out.splitlines()]
    assert [u["label"] for u in updates if u["type"] == "onset"] == [label for label, _, _ in truth], updates
    assert [m.json() for m in got if m.topic == "streamdet/pulse/events"] == updates
    assert [m.payload for m in got if m.topic == f"streamdet/pulse/{truth[0][0]}"] == ["OFF", "ON", "OFF"]
    assert any(m.topic == "homeassistant/binary_sensor/streamdet_pulse/low/config" for m in got)


@pytest.mark.slow
def test_mqtts_uses_tls_and_verifies_the_broker(cli, tmp_path: Path) -> None:
    """``mqtts://``: TLS against a broker with a self-signed certificate, trusted through SSL_CERT_FILE (the
    system's trust store otherwise); a broker the client cannot verify gets nothing."""
    import os

    from loopback_servers import self_signed_certificate

    cert, key = self_signed_certificate(tmp_path)
    broker = Mosquitto(tmp_path, tls=(cert, key))
    try:
        subscriber = Subscriber(broker.url, cafile=cert)
        clip = tmp_path / "silence.wav"
        import numpy as np
        import soundfile as sf

        sf.write(clip, np.zeros(8000, np.float32), 16000)
        trusted = cli("listen", "--url", f"quiet={clip}", "--mqtt", broker.url, "--format", "jsonl",
                      env={**os.environ, "SSL_CERT_FILE": str(cert)}, timeout=60)
        assert trusted.returncode == 0, trusted.stderr
        got = subscriber.wait_for(lambda ms: ms and ms[-1].payload == "offline")
        assert [m.payload for m in got if m.topic == "streamdet/status"] == ["online", "offline"]
        assert "7 message(s) sent, 0 unsent" in trusted.stderr  # the OFF states of the 7 classes
        subscriber.stop()
        untrusted = MqttPublisher(broker.url, LABELS).start()  # the system's trust store: the broker is unknown
        untrusted.add_stream("quiet")
        time.sleep(1.5)
        untrusted.close(timeout=0.5)
        assert untrusted.stats() == {**untrusted.stats(), "connections": 0, "sent": 0, "queued": len(LABELS)}
    finally:
        broker.stop()


@pytest.mark.slow
def test_serve_publishes_every_websocket_stream_to_mqtt(cli, broker: Mosquitto, tmp_path: Path) -> None:
    """`streamdet serve --mqtt`: each WebSocket stream publishes like a `listen` stream, under the name its start
    message gives it: discovery for that device, ON/OFF states and the JSON events the client itself received,
    in order; the server going away publishes offline."""
    import signal

    import soundfile as sf

    from streamdet.client import stream_file

    audio, sr = sf.read(EXAMPLE, dtype="float32")
    clip = tmp_path / "door.wav"
    sf.write(clip, audio[: 3 * sr], sr)  # the alarm-like whistle and a knock
    subscriber = Subscriber(broker.url)
    process = subprocess.Popen([*cli.command, "serve", "--port", "0", "--device", "cpu", "--threads", "1", "--mqtt",
                                broker.url, "--mqtt-prefix", "home"], stderr=subprocess.PIPE, text=True,
                               **cli.interruptible)
    try:
        lines: list[str] = []
        while not any("serving on" in line for line in lines):
            line = process.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert any(line.startswith(f"publishing to {broker.url}") for line in lines), lines
        url = lines[-1].split("serving on ")[1].split("/ ")[0]
        sent = {name: [u.to_dict() for u in stream_file(url, clip, name=name)] for name in ("door", "yard")}
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
        closing = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    got = subscriber.wait_for(lambda ms: ms and ms[-1].payload == "offline")
    subscriber.stop()
    assert "0 dropped" in closing, closing
    for name, updates in sent.items():
        assert [d["type"] for d in updates].count("onset") >= 2, updates
        assert [m.json() for m in got if m.topic == f"home/{name}/events"] == updates
        knock = [m.payload for m in got if m.topic == f"home/{name}/knock"]
        assert knock == ["OFF", "ON", "OFF"], knock
        assert any(m.topic == f"homeassistant/binary_sensor/home_{name}/knock/config" for m in got)
        assert any(m.topic == f"homeassistant/event/home_{name}/sound/config" for m in got)
    assert [m.payload for m in got if m.topic == "home/status"] == ["online", "offline"]
    bad = cli("serve", "--mqtt", "http://broker.lan")
    assert bad.returncode == 2 and "mqtt:// or mqtts://" in bad.stderr
