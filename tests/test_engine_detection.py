"""Engine end to end on the band-energy test model: known events, file == stream, sample rates, batching,
end-of-stream flush, thresholds and post-processing, latency bound."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from onnx_test_model import build_band_model, scene

import streamdet
from streamdet import Event

SCENE = [("low", 1.23, 2.71), ("mid", 2.0, 4.5), ("high", 5.13, 5.62), ("low", 6.4, 7.0)]
TOTAL = 8.0
STEP = 0.05


def key(events: list[Event]) -> list[tuple[str, float, float | None]]:
    """Events without confidence (which may differ in float32 rounding across batch sizes), sorted."""
    return sorted((e.label, e.onset, e.offset) for e in events)


def assert_same_events(a: list[Event], b: list[Event]) -> None:
    assert key(a) == key(b)
    conf_a = {(e.label, e.onset): e.confidence for e in a}
    for e in b:
        assert conf_a[(e.label, e.onset)] == pytest.approx(e.confidence, abs=1e-5)


def push_chunks(stream: streamdet.Stream, x: np.ndarray, sizes: list[int]) -> list:
    updates, i, n = [], 0, 0
    while i < len(x):
        size = sizes[n % len(sizes)]
        updates += stream.push(x[i : i + size])
        i += size
        n += 1
    return updates + stream.close()


def run_stream(det: streamdet.Detector, x: np.ndarray, sr: int = 16000, sizes: list[int] | None = None) -> list[Event]:
    s = det.stream(sr, name="s")
    push_chunks(s, x, sizes or [len(x)])
    return s.events


def test_known_onsets_and_offsets_within_one_step_plus_one_hop(band_detector: streamdet.Detector) -> None:
    x = scene(SCENE, TOTAL, noise=0.003)
    events = run_stream(band_detector, x, sizes=[1600])
    assert len(events) == len(SCENE), events
    tol = STEP + band_detector.hop
    pairs = zip(sorted(SCENE, key=lambda t: t[1]), sorted(events, key=lambda e: e.onset), strict=True)
    for (label, on, off), e in pairs:
        assert e.label == label
        assert abs(e.onset - on) <= tol and abs(e.offset - off) <= tol, (e, on, off)
        assert abs(e.onset - on) <= STEP  # in fact within one step of the 50 ms frame grid
        assert 0.9 < e.confidence <= 1.0


def test_updates_pair_onsets_and_offsets(band_detector: streamdet.Detector) -> None:
    s = band_detector.stream(16000, name="pairs")
    updates = push_chunks(s, scene(SCENE, TOTAL), [4000])
    onsets = [(u.label, u.onset) for u in updates if u.type == "onset"]
    offsets = [(u.label, u.onset) for u in updates if u.type == "offset"]
    assert sorted(onsets) == sorted(offsets) and len(onsets) == len(SCENE)
    for u in updates:
        assert u.stream == "pairs" and u.wall_time is None
        assert (u.offset is None) == (u.type == "onset")
        d = u.to_dict()
        assert set(d) == {"type", "label", "onset", "offset", "confidence", "stream", "wall_time"}
    # an onset is emitted before the matching offset
    order = [(u.type, u.label, u.onset) for u in updates]
    for label, on in onsets:
        assert order.index(("onset", label, on)) < order.index(("offset", label, on))


def test_detect_file_equals_stream(band_detector: streamdet.Detector, tmp_path: Path) -> None:
    x = scene(SCENE, TOTAL, noise=0.003)
    path = tmp_path / "scene.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    from_file = band_detector.detect_file(path)
    assert all(e.stream == "scene.wav" for e in from_file)
    from_stream = run_stream(band_detector, sf.read(path, dtype="float32")[0], sizes=[317, 5000, 64])
    assert_same_events(from_file, from_stream)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_input_rates_give_the_same_events_as_the_model_rate(
    band_detector: streamdet.Detector, tmp_path: Path, rate: int
) -> None:
    reference = run_stream(band_detector, scene(SCENE, TOTAL, 16000))
    x = scene(SCENE, TOTAL, rate)
    path = tmp_path / f"scene_{rate}.flac"
    sf.write(path, x, rate, subtype="PCM_24")
    assert key(band_detector.detect_file(path)) == key(reference)
    assert key(run_stream(band_detector, x, rate, sizes=[rate // 10 + 7])) == key(reference)


def test_n_streams_batched_equal_separate_runs(band_model: Path) -> None:
    det = streamdet.Detector(band_model, device="cpu", hop=0.25, threads=1)
    batches: list[int] = []
    run = det.engine.runner

    def counting_run(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batches.append(len(windows))
        return run(windows)

    scenes = [
        scene(SCENE, TOTAL, noise=0.003, seed=1),
        scene([("mid", 0.5, 1.5), ("high", 3.0, 3.5)], TOTAL, noise=0.003, seed=2),
        scene([("low", 0.0, 8.0)], TOTAL, noise=0.003, seed=3),
    ]
    separate = [run_stream(det, x, sizes=[4000]) for x in scenes]
    det.engine = dataclasses.replace(det.engine, runner=counting_run)  # the streams made below share it
    streams = [det.stream(16000, name=f"s{i}") for i in range(3)]
    for i in range(0, len(scenes[0]), 4000):
        det.push_many({s: x[i : i + 4000] for s, x in zip(streams, scenes, strict=True)})
    for s in streams:
        s.close()
    assert max(batches) == 3, "windows due together on three streams share one call"
    for s, expected in zip(streams, separate, strict=True):
        assert_same_events(s.events, expected)
        assert all(e.stream == s.name for e in s.events)


def test_end_of_stream_evaluates_tail_and_closes_open_events(band_detector: streamdet.Detector) -> None:
    total = 3.37  # not a multiple of the hop
    x = scene([("low", 0.5, total), ("high", 3.30, total)], total)
    s = band_detector.stream(16000, name="tail")
    during = s.push(x)
    assert [(u.type, u.label) for u in during] == [("onset", "low")]
    assert [e.label for e in s.open_events] == ["low"]
    final = s.close()
    assert sorted((u.type, u.label) for u in final) == [("offset", "high"), ("offset", "low"), ("onset", "high")]
    assert {u.label: u.offset for u in final if u.type == "offset"} == {"low": total, "high": total}
    assert s.open_events == [] and s.close() == []
    with pytest.raises(RuntimeError, match="closed"):
        s.push(x[:10])


def test_empty_and_tiny_streams(band_detector: streamdet.Detector) -> None:
    assert band_detector.stream(16000).close() == []
    s = band_detector.stream(48000)
    s.push(np.zeros(0, np.float32))
    assert s.close() == [] and s.windows == 0
    tiny = band_detector.stream(16000)
    tiny.push(scene([("mid", 0.0, 0.1)], 0.1))
    assert [(e.label, e.onset, e.offset) for e in tiny.close() if e.type == "offset"] == [("mid", 0.0, 0.1)]


def test_onset_latency_is_bounded_by_hop_plus_lookahead(band_model: Path) -> None:
    x = scene(SCENE, TOTAL)
    for lookahead in (0.0, 0.5):
        det = streamdet.Detector(band_model, device="cpu", hop=0.25, lookahead=lookahead, threads=1)
        assert det.lookahead == lookahead and det.latency_bound == pytest.approx(0.25 + lookahead)
        s = det.stream(16000)
        delays = []
        for i in range(0, len(x), 800):  # 50 ms chunks, like a live source
            for u in s.push(x[i : i + 800]):
                if u.type == "onset":
                    delays.append(s.position - u.onset)
        assert len(delays) == len(SCENE)
        assert max(delays) <= det.latency_bound + 1e-9
        assert max(delays) > det.latency_bound - 0.25  # the bound is tight, not vacuous


def test_lookahead_keeps_the_events_of_a_consistent_model(band_model: Path, band_detector: streamdet.Detector) -> None:
    x = scene(SCENE, TOTAL, noise=0.003)
    det = streamdet.Detector(band_model, device="cpu", hop=0.25, lookahead=0.75, threads=1)
    assert key(run_stream(det, x, sizes=[3000])) == key(run_stream(band_detector, x))


def test_thresholds_default_from_metadata_and_overrides(tmp_path: Path) -> None:
    path = build_band_model(tmp_path / "thr.onnx", thresholds={"mid": (0.9, 0.8)})
    det = streamdet.Detector(path, device="cpu")
    assert det.thresholds == {"low": (0.5, 0.3), "mid": (0.9, 0.8), "high": (0.5, 0.3)}
    det = streamdet.Detector(path, device="cpu", thresholds=0.7)
    assert det.thresholds["mid"] == pytest.approx((0.7, 0.42))
    det = streamdet.Detector(path, device="cpu", thresholds={"low": (0.6, 0.1)})
    assert det.thresholds == {"low": (0.6, 0.1), "mid": (0.9, 0.8), "high": (0.5, 0.3)}
    with pytest.raises(ValueError, match="unknown label 'nope'"):
        streamdet.Detector(path, device="cpu", thresholds={"nope": 0.5})
    with pytest.raises(ValueError, match="off <= on"):
        streamdet.Detector(path, device="cpu", thresholds=(0.3, 0.6))


def test_hysteresis_uses_per_class_thresholds(band_model: Path) -> None:
    # a quiet tone scores ~0.5-0.7: found at on=0.5, missed at on=0.9
    x = scene([], 3.0)
    t = np.arange(len(x)) / 16000
    x[16000:32000] += (0.0115 * np.sin(2 * np.pi * 500 * t[16000:32000])).astype(np.float32)
    low = streamdet.Detector(band_model, device="cpu", hop=0.25)
    high = streamdet.Detector(band_model, device="cpu", hop=0.25, thresholds={"low": (0.9, 0.5)})
    assert [e.label for e in run_stream(low, x)] == ["low"]
    assert run_stream(high, x) == []


def test_min_gap_merges_and_min_duration_drops(band_model: Path) -> None:
    x = scene([("low", 1.0, 1.5), ("low", 1.6, 2.0), ("high", 3.0, 3.1)], 4.0)
    plain = streamdet.Detector(band_model, device="cpu", hop=0.25)
    assert key(run_stream(plain, x)) == [("high", 3.0, 3.1), ("low", 1.0, 1.5), ("low", 1.6, 2.0)]
    merged = streamdet.Detector(band_model, device="cpu", hop=0.25, min_gap=0.2, min_duration=0.2)
    s = merged.stream(16000)
    updates = push_chunks(s, x, [800])
    assert key(s.events) == [("low", 1.0, 2.0)]
    assert [u.type for u in updates] == ["onset", "offset"]


def test_per_class_post_processing_from_metadata_and_overrides(tmp_path: Path) -> None:
    """The model's ``postprocess`` metadata sets each class's min_gap/min_duration; user values override."""
    post = {"low": {"min_gap": 0.2, "min_duration": 0.0}, "high": {"min_duration": 0.2}}
    path = build_band_model(tmp_path / "post.onnx", props={"postprocess": json.dumps(post)})
    x = scene([("low", 1.0, 1.5), ("low", 1.6, 2.0), ("mid", 2.5, 2.7), ("mid", 2.8, 3.0), ("high", 3.5, 3.6)], 4.0)
    det = streamdet.Detector(path, device="cpu", hop=0.25)
    assert det.min_gap == {"low": 0.2, "mid": 0.0, "high": 0.0}
    assert det.min_duration == {"low": 0.0, "mid": 0.0, "high": 0.2}
    # low merges its 0.1 s gap, mid (no metadata) does not, the 0.1 s high blip is dropped
    assert key(run_stream(det, x)) == [("low", 1.0, 2.0), ("mid", 2.5, 2.7), ("mid", 2.8, 3.0)]
    off = streamdet.Detector(path, device="cpu", hop=0.25, min_gap=0.0, min_duration=0.0)
    assert key(run_stream(off, x)) == [("high", 3.5, 3.6), ("low", 1.0, 1.5), ("low", 1.6, 2.0), ("mid", 2.5, 2.7),
                                       ("mid", 2.8, 3.0)]
    both = streamdet.Detector(path, device="cpu", hop=0.25, min_gap={"mid": 0.2})
    assert key(run_stream(both, x)) == [("low", 1.0, 2.0), ("mid", 2.5, 3.0)]


def test_median_filter_removes_blips(band_model: Path) -> None:
    x = scene([("mid", 1.0, 1.04), ("low", 2.0, 3.0)], 4.0)
    plain = streamdet.Detector(band_model, device="cpu", hop=0.25)
    assert key(run_stream(plain, x)) == [("low", 2.0, 3.0), ("mid", 1.0, 1.05)]
    smooth = streamdet.Detector(band_model, device="cpu", hop=0.25, median_filter=0.15)
    assert smooth.post.median_filter == 0.15 and smooth.engine.rules.median_frames == 3
    assert key(run_stream(smooth, x, sizes=[700])) == [("low", 2.0, 3.0)]


def test_score_track_progress_and_meters(band_detector: streamdet.Detector, tmp_path: Path) -> None:
    x = scene([("low", 1.0, 2.0)], 5.3)
    path = tmp_path / "track.wav"
    sf.write(path, x, 16000)
    seen: list[tuple[float, float]] = []
    track = band_detector.score_track(path, progress=lambda done, total: seen.append((done, total)))
    assert track.labels == ("low", "mid", "high") and track.frame_seconds == pytest.approx(0.05)
    assert track.scores.shape == (106, 3)  # ceil(5.3 / 0.05)
    low = track["low"]
    assert (low[20:40] > 0.99).all() and (low[:19] < 0.01).all() and (low[41:] < 0.01).all()
    done = [d for d, _ in seen]
    assert seen[-1] == pytest.approx((5.3, 5.3)) and done == sorted(done)
    s = band_detector.stream(16000)
    s.push(x[:24000])
    assert s.scores()["low"] > 0.99 and s.latest_clipwise[0] > 0.99
    stats = s.stats()
    assert stats["windows"] == 6 and stats["lost_samples"] == 0 and stats["lag_s"] == pytest.approx(0.0)
    with pytest.raises(RuntimeError, match="record_scores"):
        s.score_track()


def test_file_run_iterates_updates_lazily(band_detector: streamdet.Detector, tmp_path: Path) -> None:
    path = tmp_path / "lazy.wav"
    sf.write(path, scene(SCENE, TOTAL), 16000)
    run = band_detector.open_file(path)
    assert run.duration == pytest.approx(TOTAL)
    first = next(iter(run))
    assert first.type == "onset" and first.label == "low"
    rest = list(run)
    assert len(rest) == 2 * len(SCENE) - 1 and len(run.events) == len(SCENE)


def test_threads_pushing_concurrently(band_detector: streamdet.Detector) -> None:
    from concurrent.futures import ThreadPoolExecutor

    x = scene(SCENE, TOTAL, noise=0.003)
    expected = key(run_stream(band_detector, x))

    def work(seed: int) -> list:
        rng = np.random.default_rng(seed)
        return key(run_stream(band_detector, x, sizes=list(rng.integers(100, 9000, 20))))

    with ThreadPoolExecutor(4) as pool:
        assert all(r == expected for r in pool.map(work, range(4)))


def test_a_resolved_postprocessing_can_be_passed_whole(band_model: Path) -> None:
    """Detector(post=...) takes one resolved PostProcessing (e.g. a tuner's result) and runs exactly what the same
    settings given one by one run; giving both ways at once is refused."""
    from streamdet.postprocess import PostProcessing

    x = scene([("mid", 1.0, 1.04), ("low", 2.0, 3.0), ("low", 3.1, 3.5)], 4.0)
    by_name = streamdet.Detector(band_model, device="cpu", hop=0.25, min_gap=0.2, median_filter=0.15)
    post = PostProcessing.resolve(by_name.labels, min_gap=0.2, median_filter=0.15)
    whole = streamdet.Detector(band_model, device="cpu", hop=0.25, post=post)
    assert whole.post == by_name.post
    assert key(run_stream(whole, x)) == key(run_stream(by_name, x)) == [("low", 2.0, 3.5)]
    with pytest.raises(ValueError, match="not both"):
        streamdet.Detector(band_model, device="cpu", post=post, min_gap=0.5)
