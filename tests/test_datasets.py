"""Dataset readers and the window loader (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from streamdet.train.datasets import (
    AUDIOSET_ALERTS_MAP,
    AudioRecord,
    StrongEvent,
    frame_targets,
    load_audio,
    load_window,
    read_audioset_csv,
    read_clip_folder,
    read_desed_tsv,
)

LABELS = ["alarm", "siren", "knock"]


def write_wav(path, seconds, sr=16000, value=0.25, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * sr)
    x = np.full((n, channels), value, dtype=np.float32) if channels > 1 else np.full(n, value, dtype=np.float32)
    sf.write(path, x, sr)
    return path


def test_clip_folder_reader(tmp_path):
    write_wav(tmp_path / "alarm" / "a.wav", 1.0)
    write_wav(tmp_path / "alarm" / "sub" / "b.flac", 2.0)
    write_wav(tmp_path / "Knocking" / "k.wav", 0.5)
    write_wav(tmp_path / "dog" / "d.wav", 0.5)
    (tmp_path / "alarm" / "notes.txt").write_text("x")
    recs = read_clip_folder(tmp_path, labels=LABELS, label_map={"Knocking": "knock"})
    by_name = {r.path.name: r for r in recs}
    assert set(by_name) == {"a.wav", "b.flac", "k.wav", "d.wav"}
    assert by_name["b.flac"].labels == ("alarm",) and by_name["b.flac"].duration == pytest.approx(2.0)
    assert by_name["k.wav"].labels == ("knock",)
    assert by_name["d.wav"].labels == ()  # a negative
    assert not any(r.strong for r in recs)


def test_audioset_csv_reader(tmp_path):
    (tmp_path / "idx.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/03kmc9,"Siren"\n2,/m/01y3hg,"Smoke detector, smoke alarm"\n'
        '3,/m/0bt9lr,"Dog"\n'
    )
    (tmp_path / "seg.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--aaaaaaaaa, 30.000, 40.000, "/m/03kmc9,/m/09x0r"\n'
        'bbbbbbbbbbb, 0.000, 10.000, "/m/01y3hg"\n'
        'ccccccccccc, 5.000, 15.000, "/m/0bt9lr"\n'
        'missingxxxx, 0.000, 10.000, "/m/03kmc9"\n'
    )
    write_wav(tmp_path / "audio" / "Y--aaaaaaaaa.wav", 10.0)
    write_wav(tmp_path / "audio" / "x" / "bbbbbbbbbbb_0.wav", 10.0)
    write_wav(tmp_path / "audio" / "ccccccccccc.flac", 10.0)
    with pytest.warns(UserWarning, match="1 AudioSet rows"):
        recs = read_audioset_csv(
            tmp_path / "seg.csv",
            tmp_path / "idx.csv",
            tmp_path / "audio",
            label_map=AUDIOSET_ALERTS_MAP,
            labels=["alarm", "siren", "speech"],
        )
    assert [(r.path.name, r.labels) for r in recs] == [
        ("Y--aaaaaaaaa.wav", ("siren", "speech")),
        ("bbbbbbbbbbb_0.wav", ("alarm",)),
        ("ccccccccccc.flac", ()),
    ]
    assert all(r.duration == 10.0 and not r.strong for r in recs)
    with pytest.warns(UserWarning):
        raw = read_audioset_csv(tmp_path / "seg.csv", tmp_path / "idx.csv", tmp_path / "audio", keep_negatives=False)
    assert raw[2].labels == ("Dog",) and len(raw) == 3


def test_desed_strong_and_weak_tsv(tmp_path):
    write_wav(tmp_path / "audio" / "f1.wav", 10.0)
    write_wav(tmp_path / "audio" / "f2.wav", 8.0)
    write_wav(tmp_path / "audio" / "f3.wav", 10.0)
    (tmp_path / "strong.tsv").write_text(
        "filename\tonset\toffset\tevent_label\n"
        "f1.wav\t3.5\t5.0\tAlarm_bell_ringing\nf1.wav\t0.2\t1.0\tSpeech\nf2.wav\t\t\t\nf1.wav\t6\t7\tDog\n"
    )
    (tmp_path / "dur.tsv").write_text("filename\tduration\nf1.wav\t10.0\nf2.wav\t8.0\nf3.wav\t10.0\n")
    recs = read_desed_tsv(
        tmp_path / "strong.tsv",
        tmp_path / "audio",
        tmp_path / "dur.tsv",
        label_map={"Alarm_bell_ringing": "alarm", "Speech": "speech"},
        labels=["alarm", "speech"],
    )
    by = {r.path.name: r for r in recs}
    assert by["f1.wav"].events == (StrongEvent("speech", 0.2, 1.0), StrongEvent("alarm", 3.5, 5.0))
    assert by["f1.wav"].labels == ("speech", "alarm")
    assert by["f2.wav"].events == () and by["f2.wav"].duration == 8.0 and by["f2.wav"].strong
    assert by["f3.wav"].events == ()  # listed only in the durations file
    (tmp_path / "weak.tsv").write_text("filename\tevent_labels\nf1.wav\tSpeech,Dog\nf3.wav\tAlarm_bell_ringing\n")
    weak = read_desed_tsv(tmp_path / "weak.tsv", tmp_path / "audio")
    assert [(r.path.name, r.labels, r.strong) for r in weak] == [
        ("f1.wav", ("Speech", "Dog"), False),
        ("f3.wav", ("Alarm_bell_ringing",), False),
    ]
    assert weak[0].duration == pytest.approx(10.0)


def test_frame_targets_for_known_events():
    events = [StrongEvent("alarm", 1.0, 2.5), StrongEvent("knock", 7.9, 8.05), StrongEvent("dog", 0, 10)]
    t = frame_targets(events, LABELS, start=0.0, window_seconds=10.0, steps=10)
    assert t.shape == (10, 3) and t.dtype == np.float32
    assert t[:, 0].tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert t[:, 2].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]  # a short event straddling a boundary
    assert t[:, 1].sum() == 0
    soft = frame_targets(events, LABELS, start=0.0, window_seconds=10.0, steps=10, soft=True)
    assert soft[2, 0] == pytest.approx(0.5) and soft[7, 2] == pytest.approx(0.1) and soft[8, 2] == pytest.approx(0.05)
    shifted = frame_targets(events, LABELS, start=2.0, window_seconds=4.0, steps=8)  # 0.5 s steps from t = 2 s
    assert shifted[:, 0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    # the model contract: 32 steps per 10 s window, step i covers [i, i+1) * 0.3125 s
    t32 = frame_targets([StrongEvent("siren", 0.3125, 0.625)], LABELS, 0.0, 10.0, 32)
    assert np.flatnonzero(t32[:, 1]).tolist() == [1]


def test_load_window_strong_record_resamples_and_pads(tmp_path):
    sr_file, sr = 16000, 32000
    n = 3 * sr_file
    x = np.zeros(n, dtype=np.float32)
    x[sr_file : 2 * sr_file] = 0.5  # loud second 1-2 s
    path = tmp_path / "s.wav"
    sf.write(path, x, sr_file)
    rec = AudioRecord(path, 3.0, ("alarm",), (StrongEvent("alarm", 1.0, 2.0),))
    w = load_window(rec, LABELS, window_seconds=4.0, sample_rate=sr, steps=8, start=0.5)
    assert w.audio.shape == (4 * sr,) and w.audio.dtype == np.float32
    assert np.abs(w.audio[int(0.6 * sr) : int(1.4 * sr)]).mean() == pytest.approx(0.5, abs=0.01)
    assert np.abs(w.audio[int(2.6 * sr) :]).max() == 0.0  # padded past the end of the file
    assert w.strong and w.start == 0.5 and w.clip_target.tolist() == [1, 0, 0]
    assert w.frame_target[:, 0].tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    late = load_window(rec, LABELS, window_seconds=1.0, sample_rate=sr, steps=4, start=2.0)
    assert late.clip_target.tolist() == [0, 0, 0] and late.frame_target.sum() == 0
    a = load_window(rec, LABELS, 1.0, sr, 4, rng=np.random.default_rng(3))
    b = load_window(rec, LABELS, 1.0, sr, 4, rng=np.random.default_rng(3))
    assert a.start == b.start and 0.0 <= a.start <= 2.0 and np.array_equal(a.audio, b.audio)


def test_load_window_weak_record_and_stereo(tmp_path):
    path = write_wav(tmp_path / "w.wav", 2.0, sr=32000, value=0.2, channels=2)
    rec = AudioRecord(path, None, ("siren",))
    w = load_window(rec, LABELS, 1.0, 32000, 32)
    assert not w.strong and w.clip_target.tolist() == [0, 1, 0]
    assert w.frame_target.shape == (32, 3) and w.frame_target.sum() == 0
    assert load_audio(path, 32000).shape == (64000,)
    assert load_audio(path, 32000, start=1.5).shape == (16000,)
