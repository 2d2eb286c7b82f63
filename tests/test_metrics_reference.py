"""streamdet.metrics against the reference packages (sed_eval, psds_eval, sed_scores_eval, sklearn).

Random event sets come from hypothesis; times lie on a 50 ms grid so that collar and criterion
boundaries are hit exactly. Real data: HTS-AT's DESED public-eval predictions (tests/data/desed_public_eval).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamdet.metrics import (
    PSDS1,
    PSDS2,
    PSDSParams,
    ScoreTrack,
    average_precision,
    detect,
    event_based,
    events_from_records,
    intersection_f1,
    psds_from_operating_points,
    psds_from_scores,
    read_durations,
    read_events,
    segment_based,
)

pd = pytest.importorskip("pandas")
warnings.filterwarnings("ignore", category=UserWarning, module="dcase_util")
sed_eval = pytest.importorskip("sed_eval")
psds_eval = pytest.importorskip("psds_eval")

DATA = Path(__file__).parent / "data" / "desed_public_eval"
CLASSES = ["a", "b", "c"]
FILES = ["f0.wav", "f1.wav", "f2.wav"]
DURATION = 6.0
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def event_tables(draw, allow_overlap: bool = False, min_events: int = 0):
    """Records ``(file, onset, offset, label)`` on a 50 ms grid; without overlaps within a class if asked."""
    records = []
    for name in FILES:
        for label in CLASSES:
            n = draw(st.integers(0, 3))
            if allow_overlap:
                for _ in range(n):
                    on = draw(st.integers(0, 110))
                    length = draw(st.integers(1, 30))
                    records.append((name, on * 0.05, min(on + length, 120) * 0.05, label))
            else:
                cuts = sorted(draw(st.lists(st.integers(0, 120), min_size=2 * n, max_size=2 * n, unique=True)))
                records += [(name, cuts[2 * i] * 0.05, cuts[2 * i + 1] * 0.05, label) for i in range(n)]
    records = draw(st.permutations(records))
    if len(records) < min_events:
        records = list(records) + [("f0.wav", 0.0, 1.0, "a")][: min_events - len(records)]
    return records


def _df(records):
    return pd.DataFrame(records, columns=["filename", "onset", "offset", "event_label"])


def _meta():
    return pd.DataFrame({"filename": FILES, "duration": [DURATION] * len(FILES)})


def _durations():
    return dict.fromkeys(FILES, DURATION)


def _sed_eval_lists(records, name):
    return [{"filename": f, "onset": on, "offset": off, "event_label": lab}
            for f, on, off, lab in records if f == name]


@pytest.fixture(autouse=True, scope="module")
def _psds_eval_pandas3_shim():
    """Run psds_eval 0.5.3 on pandas 3 / numpy 2: two calls it makes were removed; same arithmetic, new API."""

    def step_curve(x, xp, yp):
        roc = pd.DataFrame({"x": xp, "y": yp}).groupby("x").agg("max").reset_index().sort_values(by="x")
        roc.y = roc.y.cummax()
        merged = pd.merge(pd.Series(x, name="x"), roc, how="outer", on="x").ffill().fillna(value=0)
        return merged.y.values

    def auc(x, y, max_x=None, decreasing_y=False):
        # psds_eval's _auc; its ``int(np.argwhere(...))`` on a (1, 1) array fails with numpy 2.
        _x, _y = np.array(x), np.array(y)
        if max_x is None:
            max_x = _x.max()
        if max_x not in _x:
            _x = np.sort(np.concatenate([_x, [max_x]]))
            max_i = int(np.argwhere(_x == max_x)[0, 0])
            _y = np.concatenate([_y[:max_i], [_y[max_i - 1]], _y[max_i:]])
        valid_idx = _x <= max_x
        return np.sum(np.diff(_x[valid_idx]) * np.array(_y[valid_idx])[:-1])

    originals = psds_eval.PSDSEval.step_curve, psds_eval.PSDSEval._auc
    psds_eval.PSDSEval.step_curve = staticmethod(step_curve)
    psds_eval.PSDSEval._auc = staticmethod(auc)
    yield
    psds_eval.PSDSEval.step_curve, psds_eval.PSDSEval._auc = (staticmethod(f) for f in originals)


# ---------------------------------------------------------------- intersection-based F1 (psds_eval)


def _psds_eval_f1(gt, pred, dtc, gtc, cttc):
    ev = psds_eval.PSDSEval(dtc, gtc, cttc, ground_truth=_df(gt), metadata=_meta())
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ev.compute_macro_f_score(_df(pred))


@SETTINGS
@given(gt=event_tables(min_events=1), pred=event_tables(min_events=1),
       crit=st.sampled_from([(0.5, 0.5, 0.3), (0.7, 0.7, 0.3), (0.1, 0.1, 0.3), (0.3, 0.8, 0.5)]))
def test_intersection_f1_matches_psds_eval(gt, pred, crit) -> None:
    ref_macro, ref_class = _psds_eval_f1(gt, pred, *crit)
    got = intersection_f1(events_from_records(pred), events_from_records(gt), _durations(),
                          dtc=crit[0], gtc=crit[1], cttc=crit[2])
    assert set(got.classes) == set(ref_class)
    for label, value in ref_class.items():
        assert got.classes[label]["f1"] == pytest.approx(value, abs=1e-12, nan_ok=True), label
    assert got.overall["f1_macro"] == pytest.approx(ref_macro, abs=1e-12, nan_ok=True)


def test_intersection_f1_reproduces_htsat_desed() -> None:
    gt, meta = read_events(DATA / "answer.tsv"), read_durations(DATA / "answer_meta.tsv")
    for name, published in (("htsat-test_outputmap.tsv", 48.42), ("htsat-test-ensemble_outputmap.tsv", 50.67)):
        pred = read_events(DATA / name)
        got = intersection_f1(pred, gt, meta)
        assert round(100 * got.overall["f1_macro"], 2) == published
        ev = psds_eval.PSDSEval(0.5, 0.5, 0.3, ground_truth=pd.read_csv(DATA / "answer.tsv", sep="\t"),
                                metadata=pd.read_csv(DATA / "answer_meta.tsv", sep="\t"))
        ref_macro, ref_class = ev.compute_macro_f_score(pd.read_csv(DATA / name, sep="\t"))
        assert got.overall["f1_macro"] == pytest.approx(ref_macro, abs=1e-12)
        for label, value in ref_class.items():
            assert got.classes[label]["f1"] == pytest.approx(value, abs=1e-12)


# ---------------------------------------------------------------- PSDS (psds_eval, sed_scores_eval)


def _psds_eval_psds(gt, ops, params: PSDSParams):
    ev = psds_eval.PSDSEval(params.dtc, params.gtc, params.cttc, ground_truth=_df(gt), metadata=_meta())
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for op in ops:
            ev.add_operating_point(_df(op))
        return ev.psds(params.alpha_ct, params.alpha_st, params.max_efpr).value


@SETTINGS
@given(gt=event_tables(min_events=1), ops=st.lists(event_tables(min_events=1), min_size=1, max_size=4),
       params=st.sampled_from([PSDS1, PSDS2, PSDSParams(0.5, 0.5, 0.3, 0.3, 0.0, None),
                               PSDSParams(0.3, 0.6, 0.2, 1.0, 0.5, 2000.0)]))
def test_psds_from_operating_points_matches_psds_eval(gt, ops, params) -> None:
    gt = _with_all_classes(gt)  # psds_eval's cross-trigger mean is NaN with a single class
    ref = _psds_eval_psds(gt, ops, params)
    got = psds_from_operating_points([events_from_records(op) for op in ops], events_from_records(gt),
                                     _durations(), params)
    assert got.value == pytest.approx(ref, abs=1e-12, nan_ok=True)


def test_psds_reproduces_psds_eval_on_desed_thresholds() -> None:
    """Operating points = HTS-AT single and ensemble outputs: PSDS1 and PSDS2 as psds_eval."""
    gt, meta = read_events(DATA / "answer.tsv"), read_durations(DATA / "answer_meta.tsv")
    names = ["htsat-test_outputmap.tsv", "htsat-test-ensemble_outputmap.tsv"]
    ops = [read_events(DATA / n) for n in names]
    for params in (PSDS1, PSDS2):
        ev = psds_eval.PSDSEval(params.dtc, params.gtc, params.cttc,
                                ground_truth=pd.read_csv(DATA / "answer.tsv", sep="\t"),
                                metadata=pd.read_csv(DATA / "answer_meta.tsv", sep="\t"))
        for n in names:
            ev.add_operating_point(pd.read_csv(DATA / n, sep="\t"))
        ref = ev.psds(params.alpha_ct, params.alpha_st, params.max_efpr).value
        got = psds_from_operating_points(ops, gt, meta, params).value
        assert got == pytest.approx(ref, abs=1e-12)
        assert 0.0 < got < 1.0


@st.composite
def score_tracks(draw):
    tracks = {}
    for name in FILES:
        n_frames = draw(st.integers(4, 10))
        values = draw(st.lists(st.integers(0, 20), min_size=n_frames * len(CLASSES), max_size=n_frames * len(CLASSES)))
        scores = np.array(values, dtype=float).reshape(n_frames, len(CLASSES)) / 20
        timestamps = np.linspace(0.0, DURATION, n_frames + 1)
        tracks[name] = ScoreTrack.from_timestamps(timestamps, scores, list(CLASSES))
    return tracks


def _boundary_tracks():
    """f0: a 'b' detection over 3.0-4.5 s; the other files silent (4 frames of 1.5 s)."""
    silent = np.zeros((4, len(CLASSES)))
    f0 = silent.copy()
    f0[2, 1] = 0.05
    t = np.linspace(0.0, DURATION, 5)
    return {name: ScoreTrack.from_timestamps(t, f0 if name == "f0.wav" else silent, list(CLASSES)) for name in FILES}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gt=event_tables(), tracks=score_tracks(), params=st.sampled_from([PSDS1, PSDS2]))
# found by hypothesis: 0.15 s of 'b' ground truth (4.35 - 4.5 s in floats) in a 1.5 s detection is a DTC ratio of
# 0.1 within rounding error; sed_scores_eval rounds overlap durations to microseconds and counts it
@example(gt=[("f0.wav", 0.0, 3 * 0.05, "a"), ("f0.wav", 87 * 0.05, 90 * 0.05, "b")], tracks=_boundary_tracks(),
         params=PSDS2)
def test_psds_from_scores_matches_sed_scores_eval(gt, tracks, params) -> None:
    sse_psds = pytest.importorskip("sed_scores_eval.intersection_based")
    from sed_scores_eval.base_modules import statistics
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    if not hasattr(statistics, "_cy_onset_offset_curves"):  # pandas 3 hands the Cython code read-only arrays
        statistics._cy_onset_offset_curves = statistics.onset_offset_curves
        statistics.onset_offset_curves = lambda s, t, c=None: statistics._cy_onset_offset_curves(
            np.array(s), np.array(t), None if c is None else np.array(c))

    gt = _with_all_classes(gt)
    got = psds_from_scores(tracks, events_from_records(gt), _durations(), params)
    scores = {n: create_score_dataframe(t.scores, t.timestamps, list(CLASSES)) for n, t in tracks.items()}
    ground_truth = {n: [(on, off, lab) for f, on, off, lab in gt if f == n] for n in FILES}
    ref, *_ = sse_psds.psds(scores, ground_truth, _durations(), dtc_threshold=params.dtc, gtc_threshold=params.gtc,
                            cttc_threshold=params.cttc if params.alpha_ct else None,
                            alpha_ct=params.alpha_ct, alpha_st=params.alpha_st,
                            max_efpr=params.max_efpr)
    assert got.value == pytest.approx(ref, abs=1e-9)


def _with_all_classes(records):
    """Add a short ground-truth event for every class that has none (no overlap can arise)."""
    present = {r[3] for r in records}
    return list(records) + [("f2.wav", 5.5, 5.9, c) for c in CLASSES if c not in present]


def test_detect_thresholds_score_tracks() -> None:
    track = ScoreTrack.from_timestamps([0, 1, 2, 3, 4, 5], [[0.1], [0.6], [0.6], [0.2], [0.9]], ["x"])
    events = detect(track, 0.6, "f")
    assert [(e.onset, e.offset, e.confidence) for e in events] == [(1.0, 3.0, 0.6), (4.0, 5.0, 0.9)]


# ---------------------------------------------------------------- collar- and segment-based (sed_eval)


@SETTINGS
@given(gt=event_tables(allow_overlap=True), pred=event_tables(allow_overlap=True),
       collar=st.sampled_from([(0.2, 0.2), (0.1, 0.5), (0.25, 0.0)]), zero=st.booleans())
def test_event_based_matches_sed_eval(gt, pred, collar, zero) -> None:
    metric = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(CLASSES), t_collar=collar[0], percentage_of_length=collar[1],
        empty_system_output_handling="zero_score" if zero else None)
    for name in FILES:
        metric.evaluate(_sed_eval_lists(gt, name), _sed_eval_lists(pred, name))
    ref = metric.results()
    got = event_based(events_from_records(pred), events_from_records(gt), labels=CLASSES, t_collar=collar[0],
                      percentage_of_length=collar[1], zero_score_empty_output=zero)
    _compare(got.overall["f1_micro"], ref["overall"]["f_measure"]["f_measure"])
    _compare(got.overall["precision_micro"], ref["overall"]["f_measure"]["precision"])
    _compare(got.overall["recall_micro"], ref["overall"]["f_measure"]["recall"])
    for key in ("f_measure", "precision", "recall"):
        ours = {"f_measure": "f1"}.get(key, key)
        _compare(got.overall[f"{ours}_macro"], ref["class_wise_average"]["f_measure"][key])
    _compare(got.overall["error_rate_macro"], ref["class_wise_average"]["error_rate"]["error_rate"])
    for label in CLASSES:
        _compare(got.classes[label]["f1"], ref["class_wise"][label]["f_measure"]["f_measure"])
        _compare(got.classes[label]["error_rate"], ref["class_wise"][label]["error_rate"]["error_rate"])


@SETTINGS
@given(gt=event_tables(allow_overlap=True), pred=event_tables(allow_overlap=True),
       resolution=st.sampled_from([1.0, 0.5, 0.3]), with_durations=st.booleans(), zero=st.booleans())
def test_segment_based_matches_sed_eval(gt, pred, resolution, with_durations, zero) -> None:
    metric = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=list(CLASSES), time_resolution=resolution)
    metric.empty_system_output_handling = "zero_score" if zero else None
    for name in FILES:
        metric.evaluate(_sed_eval_lists(gt, name), _sed_eval_lists(pred, name),
                        evaluated_length_seconds=DURATION if with_durations else None)
    ref = metric.results()
    got = segment_based(events_from_records(pred), events_from_records(gt), labels=CLASSES,
                        durations=_durations() if with_durations else None, time_resolution=resolution,
                        zero_score_empty_output=zero)
    for key in ("f_measure", "precision", "recall"):
        ours = {"f_measure": "f1"}.get(key, key)
        _compare(got.overall[f"{ours}_micro"], ref["overall"]["f_measure"][key])
        _compare(got.overall[f"{ours}_macro"], ref["class_wise_average"]["f_measure"][key])
    for key in ("error_rate", "substitution_rate", "deletion_rate", "insertion_rate"):
        _compare(got.overall[key], ref["overall"]["error_rate"][key])
    _compare(got.overall["error_rate_macro"], ref["class_wise_average"]["error_rate"]["error_rate"])
    for label in CLASSES:
        _compare(got.classes[label]["f1"], ref["class_wise"][label]["f_measure"]["f_measure"])
        _compare(got.classes[label]["error_rate"], ref["class_wise"][label]["error_rate"]["error_rate"])


def test_event_and_segment_based_match_sed_eval_on_desed() -> None:
    gt, meta = read_events(DATA / "answer.tsv"), read_durations(DATA / "answer_meta.tsv")
    pred = read_events(DATA / "htsat-test_outputmap.tsv")
    classes = sorted({e.label for evs in gt.values() for e in evs})
    event_metric = sed_eval.sound_event.EventBasedMetrics(classes, t_collar=0.2, percentage_of_length=0.2,
                                                          empty_system_output_handling="zero_score")
    segment_metric = sed_eval.sound_event.SegmentBasedMetrics(classes, time_resolution=1.0)
    segment_metric.empty_system_output_handling = "zero_score"
    for name in meta:
        ref_list = [e.__dict__ | {"filename": name, "event_label": e.label} for e in gt.get(name, [])]
        est_list = [e.__dict__ | {"filename": name, "event_label": e.label} for e in pred.get(name, [])]
        event_metric.evaluate(ref_list, est_list)
        segment_metric.evaluate(ref_list, est_list, evaluated_length_seconds=meta[name])
    ev_ref, seg_ref = event_metric.results(), segment_metric.results()
    ev = event_based(pred, gt, durations=meta)
    seg = segment_based(pred, gt, durations=meta)
    assert ev.overall["f1_macro"] == pytest.approx(ev_ref["class_wise_average"]["f_measure"]["f_measure"], abs=1e-12)
    assert ev.overall["f1_micro"] == pytest.approx(ev_ref["overall"]["f_measure"]["f_measure"], abs=1e-12)
    assert seg.overall["f1_micro"] == pytest.approx(seg_ref["overall"]["f_measure"]["f_measure"], abs=1e-12)
    assert seg.overall["error_rate"] == pytest.approx(seg_ref["overall"]["error_rate"]["error_rate"], abs=1e-12)
    assert seg.overall["f1_macro"] == pytest.approx(
        seg_ref["class_wise_average"]["f_measure"]["f_measure"], abs=1e-12)
    # the figures themselves, so that a change in both implementations would still be caught
    assert round(ev.overall["f1_macro"], 4) == 0.0676
    assert round(seg.overall["f1_micro"], 4) == 0.6955


def _compare(got: float, ref: float) -> None:
    if ref is None or (isinstance(ref, float) and math.isnan(ref)):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(ref, abs=1e-12)


# ---------------------------------------------------------------- clip-level AP (sklearn)


@SETTINGS
@given(data=st.data())
def test_average_precision_matches_sklearn(data) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    n = data.draw(st.integers(2, 40))
    y_true = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    y_score = np.array(data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))) / 6
    if not y_true.any():
        assert math.isnan(average_precision(y_true, y_score))
        return
    assert average_precision(y_true, y_score) == pytest.approx(metrics.average_precision_score(y_true, y_score),
                                                               abs=1e-12)
