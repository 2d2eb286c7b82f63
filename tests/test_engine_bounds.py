"""Issue 18 item 4: one large push costs what the same audio costs in small chunks (time linear in the audio's
length, however it is chunked) and holds memory bounded by the model's window and batch, not by the push."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
from cheap_engine import bursts, energy_engine

from streamdet.engine import Engine
from streamdet.stream import Stream


def _free_runner(engine: Engine) -> Engine:
    """The same geometry with a runner that costs nothing, so only the engine's bookkeeping is timed."""
    steps = engine.timeline.window // engine.timeline.step

    def runner(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((x.shape[0], steps, 1), np.float32), np.zeros((x.shape[0], 1), np.float32)

    return Engine(engine.timeline, engine.labels, engine.post, runner, engine.batch_limit)


def _push(engine: Engine, x: np.ndarray, sample_rate: int, chunk: int) -> Stream:
    stream = Stream(engine, sample_rate)
    for a in range(0, x.shape[0], chunk):
        stream.push(x[a : a + chunk])
    stream.close()
    return stream


def test_one_large_push_costs_what_small_chunks_cost() -> None:
    """10 minutes in one push against 2 s pushes, interleaved, best of 3. Before the fix the history was copied
    after every inference batch (quadratic: 3-4x the chunked time here, 7x at 20 minutes)."""
    sr = 16000
    engine = _free_runner(energy_engine(sample_rate=sr))
    x = np.zeros(10 * 60 * sr, np.float32)
    one, chunked = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        _push(engine, x, sr, x.shape[0])
        one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _push(engine, x, sr, 2 * sr)
        chunked.append(time.perf_counter() - t0)
    assert min(one) < 2.0 * min(chunked), (one, chunked)


def _peak_bytes(engine: Engine, x: np.ndarray, sample_rate: int) -> tuple[int, Stream]:
    tracemalloc.start()
    try:
        stream = _push(engine, x, sample_rate, x.shape[0])
        return tracemalloc.get_traced_memory()[1], stream
    finally:
        tracemalloc.stop()


def test_one_large_push_memory_is_bounded_by_the_model_not_the_push() -> None:
    """Peak memory of one push (16 kHz input resampled to the 32 kHz model) does not grow with the push's length
    and stays within a few batches of windows; events are those of 0.5 s pushes. Before the fix a 10-minute push
    peaked at 194 MB (the whole push at the model rate, twice), a 5-minute one at 117 MB."""
    sr = 16000
    engine = energy_engine()  # 32 kHz, 10 s window, batches of 16
    long = bursts(10 * 60, sr)
    peak_long, stream = _peak_bytes(engine, long, sr)
    peak_short, _ = _peak_bytes(engine, long[: long.shape[0] // 4], sr)
    batch_bytes = engine.batch_limit * engine.timeline.window * 4
    assert peak_long < 2.5 * batch_bytes, (peak_long, batch_bytes)
    assert peak_long < 1.1 * peak_short + 2**20, (peak_long, peak_short)
    chunked = _push(engine, long, sr, sr // 2)
    assert len(stream.events) == 10
    assert [(e.onset, e.offset) for e in stream.events] == [(e.onset, e.offset) for e in chunked.events]


def test_push_many_and_push_lost_go_in_pieces() -> None:
    """push_many with several long arrays per stream and a 30-minute push_lost stay within a few batches of
    windows (two streams' windows and their concatenation into one batch; before the fix: the whole push)."""
    from streamdet.stream import push_pieces

    sr = 32000
    engine = energy_engine()
    a, b = Stream(engine, sr, name="a"), Stream(engine, sr, name="b")
    x = bursts(4 * 60, sr)
    tracemalloc.start()
    try:
        out = push_pieces([(a, [x, x]), (b, [x[: sr * 30]])])
        b.push_lost(sr * 30 * 60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * engine.batch_limit * engine.timeline.window * 4, peak
    assert a.position == 8 * 60 and b.position == 30.5 * 60
    assert len([u for u in out[a] if u.type == "onset"]) == 8
