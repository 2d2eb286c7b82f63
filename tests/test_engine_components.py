"""Unit tests of the engine's parts: ring buffer, timeline, stitching rule, median filter, tracker, session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_test_model import build_band_model, test_model_metadata

from streamdet.model_metadata import ModelMetadata
from streamdet.postprocess import PostProcessing, StreamingMedian, resolve_seconds
from streamdet.ring_buffer import RingBuffer
from streamdet.session import CPU, CUDA, ModelSession, choose_providers, default_threads
from streamdet.stitching import Stitcher, Timeline
from streamdet.tracker import EventTracker

# --- ring buffer ----------------------------------------------------------------------------


def test_ring_buffer_wraps_and_reads_by_absolute_position() -> None:
    ring = RingBuffer(10, channels=2)
    data = np.arange(28, dtype=np.float32).reshape(14, 2)
    ring.write(data[:6])
    ring.write(data[6:14])  # wraps
    out = np.empty((8, 2), np.float32)
    assert ring.read_into(out, 6) == 0
    np.testing.assert_array_equal(out, data[6:14])
    early = np.empty((3, 2), np.float32)
    # capacity 10, end 14: positions 2 and 3 were overwritten -> zeros, counted as lost
    assert ring.read_into(early, 2) == 2
    np.testing.assert_array_equal(early[:2], 0)
    np.testing.assert_array_equal(early[2], data[4])


def test_ring_buffer_gaps_zero_fill_and_count() -> None:
    ring = RingBuffer(100)
    ring.write(np.ones(10, np.float32))
    ring.write(np.full(5, 2.0, np.float32), at=20)  # 10 frames never arrived
    assert ring.end == 25 and ring.gap_frames == 10
    out = np.empty(25, np.float32)
    ring.read_into(out, 0)
    np.testing.assert_array_equal(out, [1] * 10 + [0] * 10 + [2] * 5)
    ring.write(np.full(10, 3.0, np.float32), at=20)  # overlaps the past: only the new part is kept
    assert ring.end == 30
    neg = np.empty(4, np.float32)
    assert ring.read_into(neg, -2) == 0
    np.testing.assert_array_equal(neg, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="past the written end"):
        ring.read_into(np.empty(5, np.float32), 28)


def test_ring_buffer_guard_counts_frames_at_the_overwrite_edge() -> None:
    ring = RingBuffer(16, guard=4)
    ring.write(np.arange(20, dtype=np.float32))
    out = np.empty(6, np.float32)
    # frames 4..7 are still in the ring but within `guard` of being overwritten: treated as lost
    assert ring.read_into(out, 6) == 2
    np.testing.assert_array_equal(out, [0, 0, 8, 9, 10, 11])
    assert ring.read_into(out, 8) == 0


# --- timeline -------------------------------------------------------------------------------


def _meta(sr: int, window: int, steps: int) -> ModelMetadata:
    return ModelMetadata("x", ("a", "b"), sr, window, window / steps / sr)


def test_timeline_for_htsat_and_ast_geometries() -> None:
    htsat = Timeline.create(_meta(32000, 320000, 32), hop=0.5)
    assert (htsat.step, htsat.hop, htsat.frame, htsat.lookahead_hops) == (10000, 16000, 2000, 0)
    ast = Timeline.create(_meta(16000, 163840, 1), hop=0.5, lookahead=1.2)
    assert (ast.step, ast.hop, ast.frame, ast.lookahead_hops) == (163840, 8000, 320, 2)
    odd = Timeline.create(_meta(32000, 320000, 32), hop=1 / 3)
    assert odd.hop % 250 == 0 and abs(odd.hop_seconds - 1 / 3) < 0.005 and odd.frame >= 250


# --- stitching ------------------------------------------------------------------------------


def _stitch(timeline: Timeline, windows: int) -> np.ndarray:
    """Window k predicts the constant k for every step; return the finalised frames in order."""
    st = Stitcher(timeline, 1)
    frames, expected_first = [], 0
    steps = timeline.window // timeline.step
    for k in range(1, windows + 1):
        first, part = st.add(k, np.full((steps, 1), float(k), np.float32))
        assert first == expected_first
        expected_first += part.shape[0]
        frames.append(part)
    return np.concatenate(frames)[:, 0]


def test_stitching_without_lookahead_takes_the_first_covering_window() -> None:
    t = Timeline.create(_meta(100, 400, 4), hop=0.5)  # W=400, step=100, hop=50, frame=50
    track = _stitch(t, 6)
    assert track.tolist() == [1, 2, 3, 4, 5, 6]  # frame j is first covered by window j+1


def test_stitching_with_lookahead_averages_later_covering_windows() -> None:
    t = Timeline.create(_meta(100, 400, 4), hop=0.5, lookahead=1.0)  # two extra windows
    track = _stitch(t, 8)
    # frame j: windows j+1, j+2, j+3 -> mean j+2; frames are released two hops later
    assert track.tolist() == [2, 3, 4, 5, 6, 7]


def test_stitching_uses_the_step_that_contains_each_frame() -> None:
    t = Timeline.create(_meta(100, 400, 4), hop=0.5)
    st = Stitcher(t, 1)
    out = []
    for k in range(1, 9):
        window_start = k * 50 - 400
        # each step predicts the absolute index of its first sample (consistent across windows)
        fw = np.array([[window_start + 100 * i] for i in range(4)], np.float32)
        out.append(st.add(k, fw)[1])
    track = np.concatenate(out)[:, 0]
    # frame j ([50j, 50j+50)) lies in the last step of window j+1, which spans [50j-50, 50j+50)
    assert track.tolist() == [50 * j - 50 for j in range(8)]


def test_stitching_flush_and_skipped_windows_score_zero() -> None:
    t = Timeline.create(_meta(100, 400, 4), hop=0.5, lookahead=0.5)
    st = Stitcher(t, 1)
    ones = np.ones((4, 1), np.float32)
    _, a = st.add(1, ones)
    assert a.shape[0] == 0  # frame 0 waits for window 2 (one hop of lookahead)
    _, b = st.add(2, ones)
    _, c = st.add(6, ones)  # windows 3..5 skipped
    # frame 1 had window 2; frames 2 and 3 only windows 3..5 (skipped): 0; frame 4 has window 6
    assert b[:, 0].tolist() == [1.0] and c[:, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    first, rest = st.flush(total_samples=301)  # frames up to ceil(301/50) = 7
    assert first == 5 and rest[:, 0].tolist() == [1.0, 0.0]


# --- median filter and tracker --------------------------------------------------------------


def test_streaming_median_matches_scipy_in_any_chunking() -> None:
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(0)
    x = rng.random((57, 2)).astype(np.float32)
    expected = median_filter(x, size=(5, 1), mode="nearest")
    for chunks in ([57], [1] * 57, [3, 10, 1, 20, 23]):
        med = StreamingMedian(5, 2)
        got, raws, i = [], [], 0
        for c in chunks:
            f, r = med.push(x[i : i + c])
            got.append(f)
            raws.append(r)
            i += c
        f, r = med.flush()
        got.append(f)
        raws.append(r)
        np.testing.assert_allclose(np.concatenate(got), expected)
        np.testing.assert_array_equal(np.concatenate(raws), x)


def _track(scores: list[float], **kw: float) -> list[tuple]:
    post = PostProcessing.resolve(["a"], **kw).frames(0.1)
    tr = EventTracker(["a"], post, 0.1, "t")
    updates = tr.push(np.array(scores, np.float32)[:, None])
    updates += tr.close(len(scores) * 0.1)
    return [(u.type, u.onset, u.offset) for u in updates]


def test_tracker_hysteresis_gap_and_duration() -> None:
    s = [0, 0.6, 0.4, 0.35, 0.2, 0.45, 0.7, 0.1, 0, 0.9]
    assert _track(s) == [("onset", 0.1, None), ("offset", 0.1, 0.4), ("onset", 0.6, None), ("offset", 0.6, 0.7),
                         ("onset", 0.9, None), ("offset", 0.9, 1.0)]
    # gaps of two frames (0.4-0.6 and 0.7-0.9) are merged with min_gap 0.2, not with 0.1
    assert _track(s, min_gap=0.2) == [("onset", 0.1, None), ("offset", 0.1, 1.0)]
    assert _track(s, min_gap=0.1) == _track(s)
    assert _track(s, min_duration=0.3) == [("onset", 0.1, None), ("offset", 0.1, 0.4)]
    # below `on` never starts an event, even when above `off`
    assert _track([0.45, 0.49, 0.31]) == []


def test_tracker_min_gap_and_min_duration_per_class() -> None:
    # two classes with the same track: only the class given min_gap 0.2 merges, only the one given
    # min_duration 0.3 drops the short events
    s = np.array([0, 0.6, 0.4, 0.35, 0.2, 0.45, 0.7, 0.1, 0, 0.9], np.float32)
    post = PostProcessing.resolve(["a", "b"], min_gap={"a": 0.2}, min_duration={"b": 0.3}).frames(0.1)
    assert post.min_gap_frames.tolist() == [2, 0] and post.min_duration_frames.tolist() == [0, 3]
    assert post.onset_delay(0.1) == pytest.approx(0.3)  # the longest min_duration bounds the onset report
    tr = EventTracker(["a", "b"], post, 0.1, "t")
    tr.push(np.stack([s, s], axis=1))
    tr.close(1.0)
    got = sorted((e.label, e.onset, e.offset) for e in tr.closed_events)
    assert got == [("a", 0.1, 1.0), ("b", 0.1, 0.4)]
    with pytest.raises(ValueError, match="min_gap"):
        PostProcessing.resolve(["a"], min_gap={"a": -1.0})


def test_postprocessing_is_resolved_and_validated_once() -> None:
    """One object holds every setting per class: model metadata under user values, defaults under both; a bad
    value is refused when the object is built, naming the setting, whichever way it came in."""
    post = PostProcessing.resolve(["a", "b"], model_thresholds={"a": (0.8, 0.4)},
                                  model_postprocess={"b": {"min_gap": 1.0}}, thresholds={"b": 0.5}, min_duration=0.25)
    assert post.thresholds == {"a": (0.8, 0.4), "b": (0.5, 0.3)}
    assert post.min_gap == {"a": 0.0, "b": 1.0} and post.min_duration == {"a": 0.25, "b": 0.25}
    assert post.replace(min_gap=0.5).min_gap == {"a": 0.5, "b": 0.5}
    assert post.replace(min_gap=0.5).thresholds == post.thresholds
    assert post.subset(["b"]).thresholds == {"b": (0.5, 0.3)}
    for kw, name in ((dict(min_duration=float("inf")), "min_duration"), (dict(median_filter=-1.0), "median_filter"),
                     (dict(min_gap=True), "min_gap"), (dict(thresholds=(0.3, 0.5)), "thresholds"),
                     (dict(thresholds={"z": 0.5}), "thresholds"),
                     (dict(model_postprocess={"a": {"min_gap": float("nan")}}), "min_gap")):
        with pytest.raises(ValueError, match=name):
            PostProcessing.resolve(["a", "b"], **kw)
    with pytest.raises(ValueError, match="min_gap: no value for 'b'"):
        PostProcessing(("a", "b"), {"a": (0.5, 0.3), "b": (0.5, 0.3)}, {"a": 0.0, "b": 0.0}, {"a": 0.0})


def test_resolve_seconds_model_defaults_and_user_overrides() -> None:
    model = {"a": {"min_gap": 0.5, "min_duration": 0.1}, "b": {"min_duration": 0.2}}
    assert resolve_seconds("min_gap", ["a", "b", "c"], model) == {"a": 0.5, "b": 0.0, "c": 0.0}
    assert resolve_seconds("min_duration", ["a", "b", "c"], model) == {"a": 0.1, "b": 0.2, "c": 0.0}
    assert resolve_seconds("min_gap", ["a", "b"], model, 1.0) == {"a": 1.0, "b": 1.0}
    assert resolve_seconds("min_gap", ["a", "b"], model, {"b": 0.25}) == {"a": 0.5, "b": 0.25}
    with pytest.raises(ValueError, match="unknown label 'z'"):
        resolve_seconds("min_gap", ["a"], None, {"z": 1.0})


# --- session --------------------------------------------------------------------------------


def test_provider_choice() -> None:
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    cuda = choose_providers("auto", [CUDA, CPU])
    assert cuda[0] == (CUDA, {"device_id": "0", "enable_cuda_graph": "1"}) and cuda[1] == CPU
    assert choose_providers("cuda:1", [CUDA, CPU], cuda_graph=False)[0] == (CUDA, {"device_id": "1"})
    with pytest.raises(ValueError, match="CUDAExecutionProvider is not available"):
        choose_providers("cuda", [CPU])
    assert default_threads() >= 1


def test_session_reports_provider_and_runs_with_io_binding(band_model: Path) -> None:
    plain = ModelSession(band_model, device="cpu", threads=1)
    bound = ModelSession(band_model, device="cpu", threads=1, max_batch=4, io_binding=True)
    assert plain.provider == bound.provider == CPU and bound.uses_io_binding and not plain.uses_io_binding
    assert plain.metadata == test_model_metadata()
    rng = np.random.default_rng(1)
    windows = (rng.standard_normal((6, 16000)) * 0.05).astype(np.float32)  # > max_batch: split and padded
    f1, c1 = plain.run(windows)
    f2, c2 = bound.run(windows)
    assert f1.shape == (6, 20, 3) and c1.shape == (6, 3)
    np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c1, c2, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"windows must be \[n, 16000\]"):
        plain.run(np.zeros((1, 100), np.float32))


def test_fixed_batch_models_are_padded(tmp_path: Path) -> None:
    path = build_band_model(tmp_path / "fixed.onnx", fixed_batch=4)
    sess = ModelSession(path, device="cpu", threads=1)
    assert sess.fixed_batch == 4 and sess.batch_limit == 4
    f, c = sess.run(np.zeros((5, 16000), np.float32))
    assert f.shape == (5, 20, 3) and c.shape == (5, 3)


@pytest.mark.parametrize(("hop_steps", "lookahead_hops"), [(4, 0), (4, 1), (2, 2), (1, 0), (3, 1)])
@pytest.mark.parametrize("n", [32000, 50001, 7000])
def test_offline_stitching_is_the_documented_rule(hop_steps: int, lookahead_hops: int, n: int) -> None:
    """stitch_windows (what training validation uses) gives frame j the mean of the windows from the first one that
    covers it to lookahead_hops later ones, cut at the stream's end: the rule streams apply, written out here."""
    from streamdet.stitching import stitch_windows

    sr, W, steps, C = 16000, 32000, 16, 2
    step = W // steps
    t = Timeline.for_window(sr, W, steps, hop_steps * step / sr, lookahead_hops * hop_steps * step / sr)
    assert (t.hop, t.frame, t.lookahead_hops) == (hop_steps * step, step, lookahead_hops)
    K = t.windows_at_end(n)
    wins = np.random.default_rng(n + hop_steps).random((K, steps, C)).astype(np.float32)
    frames = -(-n // step)
    expected = np.zeros((frames, C))
    for j in range(frames):
        first = -(-(j + 1) * step // t.hop)  # the first window whose end is at or after the frame's end
        covering = [k for k in range(first, first + lookahead_hops + 1)
                    if k <= K and k * t.hop - W <= j * step < k * t.hop]
        expected[j] = np.mean([wins[k - 1, j - (k * t.hop - W) // step] for k in covering], axis=0)
    np.testing.assert_allclose(stitch_windows(t, wins, n), expected, atol=1e-6)
