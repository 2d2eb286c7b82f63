"""The ``/v1/stream`` WebSocket protocol: the start message, control messages, PCM frames, close codes.

Every fault a client can make raises :class:`ProtocolError` with the WebSocket close code, a short kind
(the ``streamdet_errors_total`` label) and a message naming the problem; the connection sends the message
as ``{"type": "error", "message": ...}`` and closes with the code. See docs/serve.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# WebSocket close codes (RFC 6455 §7.4.1, and 1013 from the IANA registry).
NORMAL = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003  # a binary start message, an unknown format or message type
INVALID_DATA = 1007  # malformed JSON, bad field values, PCM that is not whole frames
POLICY = 1008  # authentication, idle timeout, a client that reads nothing
TOO_BIG = 1009  # a message over the frame limit
INTERNAL = 1011
TRY_LATER = 1013  # too many streams or detector settings

FORMATS = {"f32le": np.dtype("<f4"), "s16le": np.dtype("<i2")}
MIN_RATE, MAX_RATE = 1000, 384000
MAX_CHANNELS = 64
MAX_NAME = 200


class ProtocolError(Exception):
    """A client fault: ``code`` (WebSocket close code), ``kind`` (metrics label), ``message`` (for the client)."""

    def __init__(self, code: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class StartRequest:
    """The client's first message."""

    sample_rate: int
    channels: int
    format: str
    name: str
    hop: float | None = None
    lookahead: float | None = None
    thresholds: Any = None
    scores: bool = False
    classes: str | tuple[str, ...] | None = None  # some of the server's labels (a list, or comma-separated)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one interleaved frame (all channels of one sample time)."""
        return FORMATS[self.format].itemsize * self.channels


def parse_json_object(text: str) -> dict[str, Any]:
    """A JSON object from a text message, or a ProtocolError (1007) naming what is wrong."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(INVALID_DATA, "malformed_json", f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_DATA, "malformed_json", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _integer(obj: dict[str, Any], field: str, lo: int, hi: int, default: int | None = None) -> int:
    value = obj.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(INVALID_DATA, f"bad_{field}", f"{field} must be an integer from {lo} to {hi}, "
                                                          f"got {json.dumps(value)}")
    return value


def _seconds(obj: dict[str, Any], field: str) -> float | None:
    value = obj.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ProtocolError(INVALID_DATA, f"bad_{field}", f"{field} must be a number of seconds >= 0, "
                                                          f"got {json.dumps(value)}")
    return float(value)


def parse_start(text: str) -> StartRequest:
    """Validate the start message ``{"sample_rate", "channels", "format", "name", ...}``."""
    obj = parse_json_object(text)
    if obj.get("type", "start") != "start":
        raise ProtocolError(INVALID_DATA, "bad_start", f"the first message must be the start message "
                                                       f"(sample_rate, channels, format), got type {obj['type']!r}")
    if "sample_rate" not in obj:
        raise ProtocolError(INVALID_DATA, "bad_sample_rate", "the start message needs sample_rate (Hz)")
    rate = _integer(obj, "sample_rate", MIN_RATE, MAX_RATE)
    channels = _integer(obj, "channels", 1, MAX_CHANNELS, default=1)
    fmt = obj.get("format", "f32le")
    if fmt not in FORMATS:
        raise ProtocolError(UNSUPPORTED_DATA, "unknown_format", f"unknown format {json.dumps(fmt)}: "
                                                                f"use {' or '.join(FORMATS)}")
    name = obj.get("name", "stream")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise ProtocolError(INVALID_DATA, "bad_name", f"name must be a string of 1 to {MAX_NAME} characters")
    scores = obj.get("scores", False)
    if not isinstance(scores, bool):
        raise ProtocolError(INVALID_DATA, "bad_scores", f"scores must be true or false, got {json.dumps(scores)}")
    thresholds = obj.get("thresholds")
    if isinstance(thresholds, bool) or not isinstance(thresholds, (type(None), int, float, list, dict)):
        raise ProtocolError(INVALID_DATA, "bad_thresholds", "thresholds must be a number, an [on, off] pair or "
                                                            "an object {label: number or [on, off]}")
    hop = _seconds(obj, "hop")
    if hop == 0:
        raise ProtocolError(INVALID_DATA, "bad_hop", "hop must be positive")
    classes = obj.get("classes")
    if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
        classes = tuple(classes)
    elif not (classes is None or (isinstance(classes, str) and classes.strip())):
        raise ProtocolError(INVALID_DATA, "bad_classes", "classes must be a non-empty list of label names or one "
                                                         "comma-separated string")
    return StartRequest(rate, channels, fmt, name, hop, _seconds(obj, "lookahead"),
                        tuple(thresholds) if isinstance(thresholds, list) else thresholds, scores, classes)


def decode_frames(data: bytes, start: StartRequest) -> np.ndarray:
    """Interleaved little-endian PCM to float32 ``[frames, channels]``; a ProtocolError (1007) unless the
    message holds whole frames."""
    if len(data) % start.frame_bytes:
        raise ProtocolError(INVALID_DATA, "partial_frame",
                            f"a binary message of {len(data)} bytes is not a whole number of {start.format} frames "
                            f"({start.channels} channel(s) x {FORMATS[start.format].itemsize} bytes = "
                            f"{start.frame_bytes} bytes each)")
    x = np.frombuffer(data, FORMATS[start.format])
    if start.format == "s16le":
        x = x.astype(np.float32) / 32768.0
    return x.reshape(-1, start.channels)


def count_nonfinite(x: np.ndarray) -> int:
    """How many samples are NaN or infinite (the engine replaces them with zeros)."""
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def error_message(message: str) -> dict[str, Any]:
    """The ``{"type": "error", "message": ...}`` message."""
    return {"type": "error", "message": message}
