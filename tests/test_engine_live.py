"""Live input: the PortAudio callback path, lost-input accounting, wall-clock times, cross-stream batching,
the lag rule; plus one smoke test through a PulseAudio null sink (marked ``live``)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from onnx_test_model import scene

import streamdet
from streamdet import live as live_module
from streamdet.live import LiveStream

SR = 16000
BLOCK = 800  # 50 ms


class FakeClock:
    """PortAudio stream time (adc) and the epoch clock the callback reads, advancing together."""

    epoch0 = 1_700_000_000.0

    def __init__(self) -> None:
        self.adc = 100.0

    def time(self) -> float:
        return self.epoch0 + self.adc + 0.01  # callback runs 10 ms after the block's ADC time


def feed(live: LiveStream, clock: FakeClock, x: np.ndarray, skip: tuple[int, int] | None = None,
         overflow_at: int | None = None) -> None:
    """Deliver ``x`` in 50 ms blocks through the callback; blocks inside ``skip`` (sample range) are lost."""
    for start in range(0, len(x), BLOCK):
        clock.adc = 100.0 + start / SR
        if skip and skip[0] <= start < skip[1]:
            continue
        info = SimpleNamespace(inputBufferAdcTime=clock.adc, currentTime=clock.adc + 0.01)
        status = SimpleNamespace(input_overflow=overflow_at == start)
        live.capture(x[start : start + BLOCK, None], BLOCK, info, status)


@pytest.fixture
def manual_detector(band_model: Path) -> streamdet.Detector:
    """A detector whose live scheduler does not run a thread: the test calls cycle()."""
    det = streamdet.Detector(band_model, device="cpu", hop=0.25, threads=1)
    det.live_scheduler().autostart = False
    return det


def test_callback_gaps_are_lost_input_and_keep_the_clock(manual_detector, monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(live_module, "_wall_clock", clock.time)
    x = scene([("low", 0.2, 0.8), ("mid", 3.0, 3.5)], 4.0)
    live = manual_detector.listen(sample_rate=SR, name="fake", open_device=False).start()
    feed(live, clock, x, skip=(16000, 24000), overflow_at=24000)  # 1.0-1.5 s never arrives
    manual_detector.live_scheduler().cycle()
    final = live.close()
    updates = list(live)
    assert len(updates) == 4 and all(u in updates for u in final)
    assert live.lost_samples == 8000 and live.overflows == 1
    assert live.stream.position == pytest.approx(4.0)
    events = sorted((e.label, e.onset, e.offset) for e in live.stream.events)
    assert events == [("low", 0.2, 0.8), ("mid", 3.0, 3.5)]  # after the gap too: no shift
    for u in updates:
        assert u.wall_time == pytest.approx(FakeClock.epoch0 + 100.0 + u.onset, abs=1e-6)


def test_small_jitter_in_timestamps_is_not_a_gap(manual_detector) -> None:
    live = manual_detector.listen(sample_rate=SR, open_device=False).start()
    for i in range(40):
        adc = 5.0 + i * BLOCK / SR + (0.004 if i % 2 else 0.0)  # 4 ms jitter
        live.capture(np.zeros((BLOCK, 1), np.float32), BLOCK, SimpleNamespace(inputBufferAdcTime=adc,
                       currentTime=adc), None)
    live.close()
    assert live.lost_samples == 0 and live.stream.position == pytest.approx(2.0)


def test_reader_overrun_counts_lost_frames_without_shifting(band_model: Path) -> None:
    det = streamdet.Detector(band_model, device="cpu", hop=0.25, threads=1)
    live = det.listen(sample_rate=SR, ring_seconds=1.0, open_device=False)  # not started: nobody reads
    clock = FakeClock()
    feed(live, clock, np.zeros(3 * SR, np.float32))
    with live.stream.lock:
        live.drain()
    # capacity 16000, guard 4000: the first 32000 frames were overwritten, 4000 more at the edge
    assert live.lost_samples == 36000 and live.stream.position == pytest.approx(3.0)
    live.close()


def test_live_streams_are_batched_together(manual_detector) -> None:
    batches: list[int] = []
    scheduler = manual_detector.live_scheduler()
    run = scheduler.runner

    def counting(windows):
        batches.append(len(windows))
        return run(windows)

    scheduler.runner = counting
    lives = [manual_detector.listen(sample_rate=SR, name=f"m{i}", open_device=False).start() for i in range(3)]
    x = scene([("high", 0.5, 1.0)], 2.0)
    for start in range(0, len(x), 4000):  # one hop at a time, like real time
        for live in lives:
            live.capture(x[start : start + 4000, None], 4000, SimpleNamespace(inputBufferAdcTime=0.0,
                           currentTime=0.0), None)
        manual_detector.live_scheduler().cycle()
    for live in lives:
        live.close()
        assert [(e.label, e.onset, e.offset) for e in live.stream.events] == [("high", 0.5, 1.0)]
    assert batches[:8] == [3] * 8  # every hop: the three streams' newest windows in one call


def test_lag_rule_drops_the_backlog_beyond_max_lag(manual_detector) -> None:
    live = manual_detector.listen(sample_rate=SR, open_device=False).start()
    live.capture(np.zeros((12 * SR, 1), np.float32), 12 * SR, None, None)  # 12 s arrive at once
    assert live.lag == pytest.approx(12.0)
    manual_detector.live_scheduler().cycle()
    s = live.stream
    assert s.skipped_samples == 47 * 4000  # windows 1..47 skipped; window 48 (the newest) evaluated
    assert s.windows == 1 and live.lag == pytest.approx(0.0) and s.processed == pytest.approx(12.0)
    live.capture(np.zeros((SR, 1), np.float32), SR, None, None)  # 1 s behind: caught up, nothing skipped
    manual_detector.live_scheduler().cycle()
    assert s.skipped_samples == 47 * 4000 and s.windows == 5
    live.close()


def test_scheduler_thread_delivers_to_iterator_and_callback(band_model: Path) -> None:
    det = streamdet.Detector(band_model, device="cpu", hop=0.25, threads=1)
    seen = []
    x = scene([("mid", 0.3, 0.9)], 1.5)
    with det.listen(sample_rate=SR, open_device=False, on_event=seen.append) as live:
        live.capture(x[:, None], len(x), None, None)
        first = live.get(timeout=30)  # delivery, not speed: a loaded machine may take seconds to schedule the thread
        assert first is not None and first.type == "onset" and first.label == "mid"
        assert first.wall_time is not None and live.stats()["latency_p50_s"] >= 0
    rest = list(live)
    assert [u.type for u in [first, *rest]] == ["onset", "offset"] and seen == [first, *rest]
    assert live.get(timeout=0.01) is None
    det.close()


# --- a real PortAudio input through a PulseAudio null sink ----------------------------------


def _pulse_ready() -> bool:
    if not shutil.which("paplay") or not shutil.which("pactl"):
        return False
    ok = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True, timeout=10)
    return ok.returncode == 0 and "virt" in ok.stdout


@pytest.mark.live
def test_listen_through_a_pulseaudio_null_sink(band_model: Path, tmp_path: Path) -> None:
    if not _pulse_ready():
        pytest.skip("needs a PulseAudio server with a null sink named 'virt'")
    os.environ["PULSE_SOURCE"] = "virt.monitor"
    wav = tmp_path / "tone.wav"
    sf.write(wav, scene([("mid", 0.5, 1.5)], 2.5, 48000), 48000)
    det = streamdet.Detector(band_model, device="cpu", hop=0.25)
    with det.listen(device="pulse", sample_rate=48000, name="pulse") as live:
        deadline = time.monotonic() + 10
        while live.ring.end == 0 and time.monotonic() < deadline:  # the first block (the server may take a while)
            time.sleep(0.01)
        started, at_start = time.monotonic(), live.ring.end / live.sample_rate
        time.sleep(0.3)
        subprocess.run(["paplay", "-d", "virt", str(wav)], check=True, timeout=30)
        time.sleep(0.8)
    listened = time.monotonic() - started
    det.close()
    events = live.stream.events
    # On a busy machine PulseAudio may drop audio: it must be accounted for (zero-filled, so the stream clock kept
    # real time), and it may split the event, but only by the audio that was lost.
    assert abs(live.stream.position - at_start - listened) < 0.5, (live.stream.position, at_start, listened)
    lost = live.stream.lost_seconds
    assert [e.label for e in events] == ["mid"] * len(events) and events, events
    gaps = sum(b.onset - a.offset for a, b in itertools.pairwise(events))
    assert len(events) == 1 or gaps <= lost + 0.1, (events, lost)
    assert 0.9 <= events[-1].offset - events[0].onset <= 1.15
    assert live.overflows >= 0 and live.stats()["latency_p95_s"] < 2.0
