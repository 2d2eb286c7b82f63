"""Readers/writers of streamdet.metrics, hand-checked metric cases, and the numpy-only import rule."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamdet.events import Event
from streamdet.metrics import (
    EvalInputError,
    average_precision,
    clip_map,
    event_based,
    events_from_records,
    intersection_f1,
    read_durations,
    read_events,
    rename_files,
    write_durations,
    write_events_jsonl,
    write_events_tsv,
)

DATA = Path(__file__).parent / "data" / "desed_public_eval"


def test_read_desed_tables() -> None:
    gt = read_events(DATA / "answer.tsv")
    meta = read_durations(DATA / "answer_meta.tsv")
    assert sum(len(v) for v in gt.values()) == 2765
    assert len(meta) == 692 and set(gt) <= set(meta)
    first = gt["1Ro0FgMWTUE_120_130.wav"][0]
    assert first == Event("Speech", 0.0, 2.081, 1.0, "1Ro0FgMWTUE_120_130.wav")


def test_tsv_jsonl_round_trip(tmp_path: Path) -> None:
    table = {"a.wav": [Event("dog", 0.1, 0.7, 0.9, "a.wav"), Event("cat", 1 / 3, 2.0, 0.25, "a.wav")], "b.wav": []}
    write_events_tsv(table, tmp_path / "e.tsv", confidence=True)
    assert read_events(tmp_path / "e.tsv") == table
    write_events_jsonl(table, tmp_path / "e.jsonl")
    assert read_events(tmp_path / "e.jsonl") == {"a.wav": table["a.wav"]}  # JSONL has no event-less files
    write_durations({"a.wav": 10.0, "b.wav": 2.5}, tmp_path / "meta.tsv")
    assert read_durations(tmp_path / "meta.tsv") == {"a.wav": 10.0, "b.wav": 2.5}
    (tmp_path / "e.csv").write_text("file,label,onset,offset,confidence\na.wav,dog,0.1,0.7,0.9\n")
    assert read_events(tmp_path / "e.csv") == {"a.wav": [table["a.wav"][0]]}


@pytest.mark.parametrize(("name", "text", "message"), [
    ("x.tsv", "filename\tonset\toffset\n", "no event label column"),
    ("x.tsv", "filename\tonset\toffset\tevent_label\na.wav\t2\t1\tdog\n", "x.tsv:2: offset 1.0 is before onset"),
    ("x.tsv", "filename\tonset\toffset\tevent_label\na.wav\t1\t\tdog\n", "x.tsv:2: onset, offset and label"),
    ("x.jsonl", '{"file": "a.wav", "label": "dog", "onset": 0}\n', "x.jsonl:1: offset must be a finite number"),
    ("x.jsonl", "not json\n", "x.jsonl:1: not JSON"),
    ("x.tsv", "", "empty file"),
])
def test_malformed_inputs_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(EvalInputError, match=message.replace("(", r"\(")):
        read_events(path)


def test_rename_files_maps_paths_to_base_names() -> None:
    table = {"audio/a.wav": [Event("dog", 0, 1, 1, "audio/a.wav")], "c.wav": []}
    renamed = rename_files(table, ["a.wav", "b.wav"])
    assert list(renamed) == ["a.wav", "c.wav"] and renamed["a.wav"][0].stream == "a.wav"


def test_intersection_f1_hand_example_and_psds_eval_zero_tp_convention() -> None:
    gt = events_from_records([("f", 0.0, 2.0, "dog"), ("f", 4.0, 6.0, "dog"), ("f", 0.0, 1.0, "cat")])
    # dog: first detection covers 75 % of the first event (TP); second is mostly outside (fails DTC: FP).
    pred = events_from_records([("f", 0.5, 2.0, "dog"), ("f", 5.5, 9.0, "dog"), ("f", 3.0, 4.0, "cat")])
    result = intersection_f1(pred, gt, {"f": 10.0})
    assert result.classes["dog"]["n_tp"] == 1 and result.classes["dog"]["n_fp"] == 1
    assert result.classes["dog"]["f1"] == pytest.approx(2 / (2 + 1 + 1))
    assert math.isnan(result.classes["cat"]["f1"])  # no true positive: NaN, skipped by the macro mean
    assert result.overall["f1_macro"] == pytest.approx(0.5)


def test_event_based_collars_are_inclusive() -> None:
    gt = events_from_records([("f", 1.0, 2.0, "dog"), ("f", 4.0, 9.0, "dog")])
    # exact binary fractions: onset off by exactly the collar, offset by exactly 20 % of a 5 s event
    hit = events_from_records([("f", 1.25, 2.25, "dog"), ("f", 4.25, 10.0, "dog")])
    miss = events_from_records([("f", 1.5, 2.0, "dog"), ("f", 4.0, 10.25, "dog")])
    assert event_based(hit, gt, t_collar=0.25).overall["f1_micro"] == 1.0
    assert event_based(miss, gt, t_collar=0.25).overall["f1_micro"] == 0.0


def test_average_precision_hand_example() -> None:
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    result = clip_map(np.array([[1, 0], [0, 0]]), np.array([[0.2, 0.5], [0.1, 0.4]]), ["a", "b"])
    assert result.overall["map"] == 1.0 and math.isnan(result.classes["b"]["ap"])


def test_metrics_import_only_numpy() -> None:
    code = ("import sys, streamdet.metrics, streamdet.cli.eval_cmd\n"
            "print(sorted(m for m in ('torch', 'pandas', 'sed_eval', 'psds_eval', 'sed_scores_eval', 'scipy',"
            " 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
