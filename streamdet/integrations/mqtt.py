"""Publishing updates to an MQTT broker, with Home Assistant MQTT discovery (the ``mqtt`` extra, paho-mqtt 2).

:class:`MqttPublisher` is an update sink: call it with each :class:`~streamdet.Update` (it is the
``on_update`` / ``on_event`` callback of a source group, a live input or a server). It never blocks
detection: messages wait in a bounded queue and a sender thread hands them to the broker one at a time
with QoS 1, waiting for each acknowledgement, so their order is kept across reconnects.

Topics (``PREFIX`` is ``streamdet`` unless set; ``<stream>`` and ``<label>`` as in the updates):

- ``PREFIX/status``: ``online`` (retained) while connected; ``offline`` on a clean close and as the
  last will the broker publishes when the connection is lost;
- ``PREFIX/<stream>/<label>``: ``ON`` at an onset, ``OFF`` at its offset (retained; every label
  starts ``OFF`` when its stream is added);
- ``PREFIX/<stream>/events``: the update as JSON (type, label, onset, offset, confidence, stream,
  wall_time), not retained;
- Home Assistant discovery (retained, sent again on every connection and when Home Assistant
  announces ``online`` on ``DISCOVERY/status``): one device per stream (identifier ``PREFIX_<stream>``),
  a ``binary_sensor`` per class (``device_class: sound``) at
  ``DISCOVERY/binary_sensor/PREFIX_<stream>/<label>/config`` and an ``event`` entity for the onsets at
  ``DISCOVERY/event/PREFIX_<stream>/sound/config``.

The queue holds ``queue_limit`` messages (default 10000, about an hour of a busy stream). While the
broker is unreachable the newest messages are kept: past the limit the oldest waiting message is
dropped and counted in ``stats()["dropped"]``. Discovery and availability messages are not queued
(they are sent afresh on each connection).
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .._version import __version__
from ..events import Update
from ..extras import import_extra

DEFAULT_PREFIX = "streamdet"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
DEFAULT_QUEUE_LIMIT = 10000
QOS = 1
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def import_paho() -> Any:
    """Import ``paho.mqtt.client``, or raise :class:`~streamdet.extras.ExtraMissingError` naming
    ``pip install "streamdet[mqtt]"``."""
    return import_extra("paho.mqtt.client", "mqtt", "publishing to MQTT (paho-mqtt)")


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is: ``mqtt[s]://[user:pass@]host[:port]`` (ports 1883 / 8883 by default)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; raises ValueError naming what is wrong."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"--mqtt {url!r}: the scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"--mqtt {url!r}: no host")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ValueError(f"--mqtt {url!r}: {exc}") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, user, password, tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def topic_part(name: str) -> str:
    """A stream or label name made safe for a topic level and a discovery id (``[A-Za-z0-9_-]``)."""
    return _TOPIC_UNSAFE.sub("_", name) or "_"


@dataclass(frozen=True)
class Message:
    """One MQTT message."""

    topic: str
    payload: str
    retain: bool = False


class Topics:
    """The topic layout of one publisher (see the module docstring)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX) -> None:
        self.prefix = prefix.strip("/")
        self.discovery_prefix = discovery_prefix.strip("/")

    @property
    def status(self) -> str:
        """The availability topic."""
        return f"{self.prefix}/status"

    def state(self, stream: str, label: str) -> str:
        """The ON/OFF topic of one class on one stream."""
        return f"{self.prefix}/{topic_part(stream)}/{topic_part(label)}"

    def events(self, stream: str) -> str:
        """The JSON updates of one stream."""
        return f"{self.prefix}/{topic_part(stream)}/events"

    def node(self, stream: str) -> str:
        """The discovery node id (and device identifier) of one stream."""
        return f"{topic_part(self.prefix)}_{topic_part(stream)}"


def update_messages(topics: Topics, update: Update) -> list[Message]:
    """The state message (retained ON/OFF) and the JSON event message of one update, in that order."""
    state = "ON" if update.type == "onset" else "OFF"
    return [
        Message(topics.state(update.stream, update.label), state, retain=True),
        Message(topics.events(update.stream), json.dumps(update.to_dict())),
    ]


def discovery_messages(topics: Topics, stream: str, labels: Sequence[str], model: str = "") -> list[Message]:
    """Home Assistant MQTT discovery configs of one stream (retained): one device, a ``binary_sensor``
    (``device_class: sound``) per class and an ``event`` entity whose event types are the classes."""
    node = topics.node(stream)
    device = {
        "identifiers": [node],
        "name": f"streamdet {stream}",
        "manufacturer": "streamdet",
        "model": model or "sound event detector",
        "sw_version": __version__,
    }
    availability = {
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    messages = []
    for label in labels:
        config = {
            "name": label.replace("_", " "),
            "unique_id": f"{node}_{topic_part(label)}",
            "state_topic": topics.state(stream, label),
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "sound",
            "qos": QOS,
            **availability,
            "device": device,
        }
        topic = f"{topics.discovery_prefix}/binary_sensor/{node}/{topic_part(label)}/config"
        messages.append(Message(topic, json.dumps(config), retain=True))
    event = {
        "name": "sound",
        "unique_id": f"{node}_sound",
        "state_topic": topics.events(stream),
        "event_types": list(labels),
        # Onsets fire the event (attributes: confidence, onset, wall_time); offsets render to {}, which
        # Home Assistant ignores.
        "value_template": (
            "{% if value_json.type == 'onset' %}"
            '{"event_type": "{{ value_json.label }}", "confidence": {{ value_json.confidence }}, '
            '"onset": {{ value_json.onset }}, "wall_time": {{ value_json.wall_time | tojson }}}'
            "{% else %}{}{% endif %}"
        ),
        "qos": QOS,
        **availability,
        "device": device,
    }
    messages.append(Message(f"{topics.discovery_prefix}/event/{node}/sound/config", json.dumps(event), retain=True))
    return messages


class MqttPublisher:
    """An update sink that publishes to an MQTT broker (see the module docstring).

    Args:
        broker: ``mqtt[s]://[user:pass@]host[:port]`` or a :class:`BrokerAddress`.
        labels: the detector's classes (one binary sensor each).
        prefix: first topic level of states, events and availability.
        discovery_prefix: Home Assistant's discovery prefix; None sends no discovery configs.
        queue_limit: most messages waiting for the broker; past it the oldest are dropped (counted).
        model: the model's name, shown as the device model in Home Assistant.
        client_id: the MQTT client id (default: ``streamdet-<prefix>-<random>``).
        tls_context: an ``ssl.SSLContext`` for ``mqtts`` (default: the system's trusted CAs).

    Use: ``pub = MqttPublisher(url, det.labels).start(); pub.add_stream("cam1"); ...; pub(update);
    ...; pub.close()``.
    """

    def __init__(
        self,
        broker: str | BrokerAddress,
        labels: Sequence[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        discovery_prefix: str | None = DEFAULT_DISCOVERY_PREFIX,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        model: str = "",
        client_id: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        keepalive: int = 30,
    ) -> None:
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be at least 1, got {queue_limit}")
        mqtt = import_paho()
        self.address = broker if isinstance(broker, BrokerAddress) else BrokerAddress.parse(broker)
        self.labels = list(labels)
        self.topics = Topics(prefix, discovery_prefix or DEFAULT_DISCOVERY_PREFIX)
        self.discovery = discovery_prefix is not None
        self.model = model
        self.queue_limit = queue_limit
        self.keepalive = keepalive
        self.streams: list[str] = []
        self.sent = 0
        self.dropped = 0
        self.connections = 0
        self._queue: deque[Message] = deque()
        self._inflight: Message | None = None  # handed to paho, not yet acknowledged (counts toward the limit)
        self._cond = threading.Condition()
        self._connected = False
        self._closing = False
        self._started = False
        import uuid

        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"streamdet-{topic_part(prefix)}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self._client.will_set(self.topics.status, "offline", qos=QOS, retain=True)
        if self.address.username is not None:
            self._client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self._client.tls_set_context(tls_context or ssl.create_default_context())
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._sender = threading.Thread(target=self._send_loop, name="streamdet-mqtt", daemon=True)

    # --- public ------------------------------------------------------------------------------
    def start(self) -> MqttPublisher:
        """Connect in the background (an unreachable broker is retried; detection never waits for it)."""
        if not self._started:
            self._started = True
            self._client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive)
            self._client.loop_start()
            self._sender.start()
        return self

    def add_stream(self, name: str) -> None:
        """Announce a stream: its discovery configs (now if connected, and on every connection) and an
        ``OFF`` state for each class."""
        with self._cond:
            if name in self.streams:
                return
            self.streams.append(name)
            connected = self._connected
        if connected and self.discovery:
            for message in discovery_messages(self.topics, name, self.labels, self.model):
                self._client.publish(message.topic, message.payload, qos=QOS, retain=True)
        for label in self.labels:
            self._enqueue(Message(self.topics.state(name, label), "OFF", retain=True))

    def publish(self, update: Update) -> None:
        """Queue the state and event messages of ``update`` (never blocks; see ``queue_limit``)."""
        if update.stream not in self.streams:
            self.add_stream(update.stream)
        for message in update_messages(self.topics, update):
            self._enqueue(message)

    __call__ = publish

    def wait_sent(self, timeout: float) -> bool:
        """Wait until every queued message was acknowledged by the broker; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout`` seconds), publish ``offline`` and disconnect."""
        if not self._started:
            return
        self.wait_sent(timeout)
        with self._cond:
            self._closing = True
            connected = self._connected
            self._cond.notify_all()
        if connected:
            info = self._client.publish(self.topics.status, "offline", qos=QOS, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # the connection went away meanwhile
                info.wait_for_publish(timeout=min(timeout, 2.0))
        self._client.disconnect()
        self._client.loop_stop()
        self._sender.join(timeout=2.0)

    def stats(self) -> dict[str, Any]:
        """connected, connections (successful connects), queued, sent, dropped, queue_limit, broker."""
        with self._cond:
            queued = len(self._queue) + (self._inflight is not None)
            return {"broker": str(self.address), "connected": self._connected, "connections": self.connections,
                    "queued": queued, "sent": self.sent, "dropped": self.dropped, "queue_limit": self.queue_limit}

    # --- internals ---------------------------------------------------------------------------
    def _enqueue(self, message: Message) -> None:
        with self._cond:
            while self._queue and len(self._queue) + (self._inflight is not None) >= self.queue_limit:
                self._queue.popleft()  # the oldest waiting message makes room for the newest
                self.dropped += 1
            if len(self._queue) + (self._inflight is not None) >= self.queue_limit:
                self.dropped += 1  # a limit of 1 taken by the message in flight
                return
            self._queue.append(message)
            self._cond.notify_all()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            return
        client.publish(self.topics.status, "online", qos=QOS, retain=True)
        if self.discovery:
            client.subscribe(f"{self.topics.discovery_prefix}/status", qos=QOS)
            for stream in list(self.streams):
                for message in discovery_messages(self.topics, stream, self.labels, self.model):
                    client.publish(message.topic, message.payload, qos=QOS, retain=True)
        with self._cond:
            self.connections += 1
            self._connected = True
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """Home Assistant came (back) online: send the discovery configs again."""
        if message.payload == b"online" and self.discovery:
            for stream in list(self.streams):
                for config in discovery_messages(self.topics, stream, self.labels, self.model):
                    client.publish(config.topic, config.payload, qos=QOS, retain=True)

    def _send_loop(self) -> None:
        """Hand the oldest queued message to paho once connected; drop it from the queue when the broker
        acknowledged it (paho resends an unacknowledged QoS 1 message after a reconnect)."""
        while True:
            with self._cond:
                while not self._closing and not (self._connected and self._queue):
                    self._cond.wait(0.5)
                if self._closing:
                    return
                message = self._inflight = self._queue.popleft()
            info = self._client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)
            while not info.is_published():
                with self._cond:
                    if self._closing:
                        return
                    self._cond.wait(0.05)
            with self._cond:
                self._inflight = None
                self.sent += 1
                self._cond.notify_all()
