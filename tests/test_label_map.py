"""Label maps at run time (issue 22): the map logic (max over members, subsets, the groups' default settings,
every error), the built-in maps against the AudioSet ontology, and `--classes` / `--label-map` through `file`,
`listen --url`, `serve` and `models show`, on the bundled model and on a band-energy model with AudioSet labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_test_model import build_band_model, tone

import streamdet
from streamdet.label_map import (
    LabelMap,
    LabelMapError,
    builtin_label_maps,
    load_label_map,
    resolve_label_map,
    split_classes,
)
from streamdet.labels import audioset_labels
from streamdet.postprocess import PostProcessing
from streamdet.session import BUNDLED_DIR
from streamdet.tracker import EventTracker

EXAMPLE = BUNDLED_DIR / "example.wav"
SMOKE, FIRE, DOG = "Smoke detector, smoke alarm", "Fire alarm", "Dog"
USER_MAP = {"ring": ["phone_ring", "doorbell"],
            "alarms": {"labels": ["alarm", "siren"], "threshold": 0.6, "min_duration": 0.25},
            "knocking": ["knock"]}


# --- the map logic ----------------------------------------------------------------------------------------
def test_a_group_scores_the_maximum_of_its_members_and_a_subset_keeps_columns_in_its_order():
    labels = ["a", "b", "c", "d"]
    scores = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    grouped = LabelMap.from_dict({"x": ["a", "c"], "y": ["d"], "z": ["b", "c", "d"]}).resolve(labels)
    out = grouped.apply(scores)
    assert grouped.labels == ("x", "y", "z") and out.shape == (50, 3)
    np.testing.assert_array_equal(out[:, 0], np.maximum(scores[:, 0], scores[:, 2]))
    np.testing.assert_array_equal(out[:, 1], scores[:, 3])
    np.testing.assert_array_equal(out[:, 2], scores[:, 1:].max(axis=1))
    subset = LabelMap.from_classes(["d", "a"]).resolve(labels)
    np.testing.assert_array_equal(subset.apply(scores), scores[:, [3, 0]])
    with pytest.raises(ValueError, match="expected scores of 4 classes"):
        subset.apply(scores[:, :3])


def test_group_settings_come_from_the_members_unless_the_map_gives_them():
    labels = ["a", "b", "c"]
    thresholds = {"a": (0.8, 0.6), "b": (0.6, 0.5), "c": (0.9, 0.2)}
    post = {"a": {"min_duration": 0.5, "min_gap": 1.0}, "b": {"min_duration": 0.25, "min_gap": 2.0},
            "c": {"min_duration": 1.0, "min_gap": 0.5}}
    resolved = LabelMap.from_dict({
        "all": ["a", "b", "c"],  # on: min 0.6, off: min 0.2, min duration: min 0.25, min gap: max 2.0
        "own": {"labels": ["a", "c"], "threshold": 0.5, "min_gap": 0.1},  # number: off = 0.6 * on
        "pair": {"labels": ["b"], "threshold": [0.7, 0.1], "min_duration": 3},
        "same": ["c"],  # one member: its own settings exactly
    }).resolve(labels, thresholds, post)
    assert resolved.thresholds == {"all": (0.6, 0.2), "own": (0.5, 0.3), "pair": (0.7, 0.1), "same": (0.9, 0.2)}
    assert resolved.postprocess == {"all": {"min_duration": 0.25, "min_gap": 2.0},
                                    "own": {"min_duration": 0.5, "min_gap": 0.1},
                                    "pair": {"min_duration": 3.0, "min_gap": 2.0},
                                    "same": {"min_duration": 1.0, "min_gap": 0.5}}
    # a model without tuned values: streamdet's defaults (0.5 / 0.3, 0 s)
    plain = LabelMap.from_dict({"g": ["a", "b"]}).resolve(labels)
    assert plain.thresholds == {"g": (0.5, 0.3)} and plain.postprocess == {"g": {"min_duration": 0.0, "min_gap": 0.0}}
    # the filled-in form is itself a label map that resolves to the same settings
    again = LabelMap.from_dict(resolved.describe()).resolve(labels)
    assert again.thresholds == resolved.thresholds and again.postprocess == resolved.postprocess


@pytest.mark.parametrize(("data", "message"), [
    ({"g": ["a", "Smoke alarm"]}, r"1 label\(s\) not in the model: 'Smoke alarm' \(did you mean "
                                  r"'Smoke detector, smoke alarm'\?\)"),
    ({"g": []}, "group 'g' is empty"),
    ({"g": {"labels": []}}, "group 'g' is empty"),
    ({"g": {"members": ["a"]}}, "unknown key 'members' \\(keys: labels, threshold, min_duration, min_gap\\)"),
    ({"g": {"threshold": 0.5}}, 'needs "labels"'),
    ({"g": ["a", "a"]}, "the model label 'a' is listed twice"),
    ({"g": {"labels": ["a"], "threshold": 1.5}}, "needs 0 <= off <= on <= 1"),
    ({"g": {"labels": ["a"], "threshold": "high"}}, "threshold must be ON or \\[ON, OFF\\]"),
    ({"g": {"labels": ["a"], "min_gap": -1}}, "min_gap must be >= 0 seconds"),
    ({"g": 3}, "expected a list of model labels, got 3"),
    ({"": ["a"]}, "a new label must be a non-empty string"),
    ({}, "expected a non-empty object"),
    (["a", "b"], "expected a non-empty object"),
])
def test_bad_maps_are_refused_naming_the_map_and_the_problem(data, message):
    labels = ["a", "b", "Smoke detector, smoke alarm"]
    with pytest.raises(LabelMapError, match=message) as caught:
        LabelMap.from_dict(data, "label map my.json").resolve(labels)
    assert str(caught.value).startswith("label map my.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["a", "b", "labels", "threshold", "min_gap", "min_duration"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8) | st.sampled_from(["a", "b", "labels", "threshold", "min_gap"]), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(data=json_values)
def test_any_json_value_is_a_map_or_a_label_map_error(data):
    try:
        resolved = LabelMap.from_dict(data, "label map fuzz").resolve(["a", "b", "labels"])
    except LabelMapError as exc:
        assert str(exc).startswith("label map fuzz")
        return
    scores = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    assert resolved.apply(scores).shape == (4, len(resolved.labels))
    PostProcessing.resolve(resolved.labels, model_thresholds=resolved.thresholds,
                           model_postprocess=resolved.postprocess)


def test_map_files_json_and_yaml_with_errors_naming_the_file(tmp_path, monkeypatch):
    good = tmp_path / "map.json"
    good.write_text(json.dumps(USER_MAP))
    assert load_label_map(good).labels == ("ring", "alarms", "knocking")
    yml = tmp_path / "map.yaml"
    yml.write_text("ring: [phone_ring, doorbell]\nalarms:\n  labels: [alarm, siren]\n  threshold: [0.6, 0.4]\n")
    loaded = load_label_map(yml)
    assert loaded.groups[1].members == ("alarm", "siren") and loaded.groups[1].threshold == (0.6, 0.4)
    cases = {
        "twice.json": ('{"a": ["x"], "a": ["y"]}', "the key 'a' is given twice"),
        "broken.json": ('{"a": ["x"]', "not valid JSON"),
        "twice.yml": ("a: [x]\na: [y]\n", "the key 'a' is given twice \\(line 2\\)"),
        "broken.yaml": ("a: [x\n", "not valid YAML"),
        "list.yaml": ("- a\n- b\n", "expected a non-empty object"),
        "binary.json": (b"\xff\xfe\x00", "cannot read it"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(LabelMapError, match=message) as caught:
            load_label_map(path)
        assert str(caught.value).startswith(f"label map {path}: ")
    with pytest.raises(LabelMapError, match=r"no such file \(and not a built-in map: household, safety\)"):
        load_label_map(tmp_path / "missing.json")
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML not installed
    with pytest.raises(LabelMapError, match=r'needs the yaml extra: pip install "streamdet\[yaml\]" \(or write'):
        load_label_map(yml)


def test_classes_keep_commas_inside_labels_and_refuse_empty_or_repeated_names():
    known = [SMOKE, FIRE, DOG, "Speech"]
    assert split_classes(f"{SMOKE},Dog", known) == [SMOKE, "Dog"]
    assert split_classes(" Dog , Smoke detector, smoke alarm", known) == ["Dog", SMOKE]
    assert split_classes("Smoke detector,Fire alarm", known) == ["Smoke detector", FIRE]  # then: unknown label
    for bad, message in (("Dog,,Speech", "expected names separated by commas"), ("", "expected names"),
                         ("Dog,Dog", "'Dog' is given twice")):
        with pytest.raises(LabelMapError, match=message):
            split_classes(bad, known)
    with pytest.raises(LabelMapError, match=r"--classes: 1 label\(s\) not in label map m: 'dgo' \(did you mean "
                                            r"'dog'\?\) \(label map m has: dog, alarm\)"):
        resolve_label_map(known, label_map=LabelMap.from_dict({"dog": [DOG], "alarm": [SMOKE]}, "label map m"),
                          classes="dgo")


# --- the built-in maps ------------------------------------------------------------------------------------
def test_every_name_in_every_builtin_map_is_in_the_audioset_ontology():
    assert builtin_label_maps() == ["household", "safety"]
    ontology = set(audioset_labels())
    for name in builtin_label_maps():
        label_map = load_label_map(name)
        assert label_map.builtin and label_map.source == f"label map {name}"
        missing = [m for group in label_map.groups for m in group.members if m not in ontology]
        assert not missing, (name, missing)
        assert label_map.resolve(audioset_labels()).labels == label_map.labels
    household = load_label_map("household")
    assert set(household.labels) == {"alarm", "siren", "doorbell", "knock", "phone", "baby_cry", "dog",
                                     "glass_breaking", "water_running", "speech", "shout"}
    assert {SMOKE, FIRE, "Alarm clock"} <= set(household.groups[0].members)
    assert set(load_label_map("safety").labels) == {"smoke_fire_alarm", "siren", "glass_breaking", "scream",
                                                     "gunshot_explosion"}


def test_a_builtin_map_on_the_bundled_model_names_the_missing_labels():
    with pytest.raises(ValueError, match=r"label map household: 44 label\(s\) not in the model: 'Alarm' .*"
                                         r"the built-in maps name AudioSet ontology classes"):
        streamdet.Detector(device="cpu", threads=1, label_map="household")


# --- on a model --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audioset_model(tmp_path_factory) -> Path:
    """The band-energy model with the 527 AudioSet labels: smoke detector 300-700 Hz, fire alarm 900-1500 Hz, dog
    2000-3500 Hz; every other class listens to 7-7.9 kHz, where the test audio has nothing."""
    bands = dict.fromkeys(audioset_labels(), (7000.0, 7900.0))
    bands.update({SMOKE: (300.0, 700.0), FIRE: (900.0, 1500.0), DOG: (2000.0, 3500.0)})
    return build_band_model(tmp_path_factory.mktemp("audioset") / "audioset_band.onnx", bands=bands)


@pytest.fixture(scope="module")
def scene_wav(tmp_path_factory) -> Path:
    """Smoke detector 0.5-1.5 s, fire alarm 1.5-2.5 s (back to back: one `alarm` event), dog 3.5-4.5 s; 6 s."""
    x = tone(500, 0.5, 1.5, 6.0) + tone(1200, 1.5, 2.5, 6.0) + tone(2800, 3.5, 4.5, 6.0)
    path = tmp_path_factory.mktemp("scene") / "scene.wav"
    sf.write(path, x, 16000)
    return path


def _events(jsonl: str) -> list[tuple[str, float, float]]:
    return [(d["label"], d["onset"], d["offset"]) for d in map(json.loads, jsonl.splitlines())
            if d.get("type", "event") in ("event", "offset")]


def _near(got: list, expected: list, tol: float) -> bool:
    return len(got) == len(expected) and all(g[0] == e[0] and abs(g[1] - e[1]) <= tol and abs(g[2] - e[2]) <= tol
                                             for g, e in zip(got, expected, strict=True))


def test_builtin_map_on_an_audioset_model_groups_members_into_one_event(audioset_model, scene_wav, cli):
    det = streamdet.Detector(audioset_model, device="cpu", threads=1, hop=0.25, label_map="household")
    assert det.labels[:2] == ["alarm", "siren"] and len(det.model_labels) == 527
    events = [(e.label, e.onset, e.offset) for e in det.detect_file(scene_wav)]
    assert _near(events, [("alarm", 0.5, 2.5), ("dog", 3.5, 4.5)], 0.1), events
    # the CLI: the same map by name, then a subset of the model's own labels, one of them with a comma
    grouped = cli("file", scene_wav, "-m", audioset_model, "--hop", "0.25", "--label-map", "household", "-f", "jsonl")
    assert grouped.returncode == 0, grouped.stderr
    assert _events(grouped.stdout) == events
    assert "527 classes, detecting 11 (alarm = Alarm | Smoke detector, smoke alarm | Fire alarm" in grouped.stderr
    subset = cli("file", scene_wav, "-m", audioset_model, "--hop", "0.25", "--classes", f"Dog,{SMOKE}", "-f", "jsonl")
    assert subset.returncode == 0, subset.stderr
    assert _near(_events(subset.stdout), [(SMOKE, 0.5, 1.5), (DOG, 3.5, 4.5)], 0.1), subset.stdout
    safety = cli("file", scene_wav, "-m", audioset_model, "--hop", "0.25", "--label-map", "safety",
                 "--classes", "smoke_fire_alarm,siren", "-f", "tsv")
    assert safety.returncode == 0, safety.stderr
    rows = [line.split("\t") for line in safety.stdout.splitlines()[1:]]
    assert [row[3] for row in rows] == ["smoke_fire_alarm"], safety.stdout


def _expected_group_events(full: streamdet.Detector, path: Path, groups: dict, post: PostProcessing) -> list:
    """The events of ``groups`` worked out from the ungrouped run: the maximum of the members' score tracks,
    through the engine's tracker with ``post``."""
    track = full.score_track(path)
    grouped = np.stack([np.max([track[m] for m in members], axis=0) for members in groups.values()], axis=1)
    tracker = EventTracker(list(groups), post.frames(track.frame_seconds), track.frame_seconds, "x")
    tracker.push(grouped.astype(np.float32))
    tracker.close(track.end)
    return [(e.label, e.onset, e.offset, e.confidence) for e in tracker.closed_events]


@pytest.mark.slow
def test_file_with_a_user_map_equals_the_members_scores_of_the_ungrouped_run(cli, tmp_path):
    full = streamdet.Detector(device="cpu", threads=1)
    th, dur, gap = full.thresholds, full.min_duration, full.min_gap
    # the documented defaults: min of the members' on / off and min duration, max of their min gap
    post = PostProcessing(("ring", "alarms", "knocking"),
                          {"ring": (min(th["phone_ring"][0], th["doorbell"][0]),
                                    min(th["phone_ring"][1], th["doorbell"][1])),
                           "alarms": (0.6, 0.36), "knocking": th["knock"]},
                          {"ring": min(dur["phone_ring"], dur["doorbell"]), "alarms": 0.25, "knocking": dur["knock"]},
                          {"ring": max(gap["phone_ring"], gap["doorbell"]), "alarms": max(gap["alarm"], gap["siren"]),
                           "knocking": gap["knock"]})
    groups = {"ring": ["phone_ring", "doorbell"], "alarms": ["alarm", "siren"], "knocking": ["knock"]}
    expected = _expected_group_events(full, EXAMPLE, groups, post)
    assert {e[0] for e in expected} == {"alarms", "knocking"}  # the example has no ring event above threshold
    path = tmp_path / "map.json"
    path.write_text(json.dumps(USER_MAP))
    result = cli("file", EXAMPLE, "--label-map", path, "-f", "jsonl", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((d["label"], d["onset"], d["offset"]) for d in got) == sorted(e[:3] for e in expected)
    confidences = sorted((e[0], e[1], e[3]) for e in expected)
    assert all(abs(d["confidence"] - c[2]) <= 2e-4 for d, c in
               zip(sorted(got, key=lambda d: (d["label"], d["onset"])), confidences, strict=True))
    # --classes alone keeps the full run's events of those classes exactly
    alone = cli("file", EXAMPLE, "--classes", "knock,speech", "-f", "jsonl", "--device", "cpu")
    everything = cli("file", EXAMPLE, "-f", "jsonl", "--device", "cpu")
    kept = [line for line in everything.stdout.splitlines() if json.loads(line)["label"] in ("knock", "speech")]
    assert alone.returncode == 0 and alone.stdout.splitlines() == kept and len(kept) == 4
    # CLI thresholds name the new labels and override the map's
    lower = tmp_path / "thresholds.json"
    lower.write_text(json.dumps({"alarms": [0.99, 0.99]}))
    strict = cli("file", EXAMPLE, "--label-map", path, "--thresholds", lower, "-f", "jsonl", "--device", "cpu")
    assert strict.returncode == 0 and {d["label"] for d in map(json.loads, strict.stdout.splitlines())} == {"knocking"}
    # models show: the map on this model, every setting filled in
    shown = cli("models", "show", "alerts", "--label-map", path, "--json")
    assert shown.returncode == 0, shown.stderr
    described = json.loads(shown.stdout)["label_map"]
    assert described["ring"] == {"labels": ["phone_ring", "doorbell"], "threshold": list(post.thresholds["ring"]),
                                 "min_duration": post.min_duration["ring"], "min_gap": post.min_gap["ring"]}


@pytest.mark.slow
def test_cli_label_map_errors_exit_2_with_the_problem(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"alarm": ["alarm"], "knock": ["knok"]}')
    for args, message in (
        (["--label-map", "household"], "error: label map household: 44 label(s) not in the model: 'Alarm'"),
        (["--label-map", bad], f"error: label map {bad}: 1 label(s) not in the model: 'knok' (did you mean 'knock'?)"),
        (["--label-map", tmp_path / "none.json"], "error: --label-map: label map"),
        (["--classes", "alarm,speach"], "error: --classes: 1 label(s) not in the model: 'speach' (did you mean "
                                        "'speech'?)"),
        (["--classes", " "], "error: --classes: expected label names"),
        (["--classes", "alarm", "--threshold", "0.5", "--thresholds", bad], "give either --threshold"),
    ):
        result = cli("file", EXAMPLE, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    shown = cli("models", "show", "alerts", "--label-map", "safety")
    assert shown.returncode == 2 and "label map safety: 19 label(s) not in the model" in shown.stderr


def test_the_live_view_shows_the_groups_meters_and_events(audioset_model):
    from rich.console import Console

    from streamdet.cli import listen_cmd

    det = streamdet.Detector(audioset_model, device="cpu", hop=0.25, threads=1, label_map="household")
    x = tone(500, 0.2, 1.5, 1.5)  # the smoke detector's band, still sounding at the end
    with det.listen(sample_rate=16000, name="kitchen", open_device=False) as live:
        view = listen_cmd.LiveView(det, live, "kitchen")
        live.capture(x[:, None], len(x), None, None)
        view.add(live.get(timeout=10))
        console = Console(record=True, width=110)
        console.print(view.render())
    det.close()
    text = console.export_text()
    assert all(label in text for label in det.labels) and "Smoke" not in text
    rows = [line.strip("│ ").split() for line in text.splitlines()]
    meters = {row[0]: row[-1] for row in rows if len(row) == 3 and row[0] in det.labels}
    assert len(meters) == 11 and meters["alarm"] == "1.00" and meters["dog"] == "0.00", text
    assert any(row[1:3] == ["alarm", "0.20"] for row in rows if len(row) > 3), text  # the open event and its onset


def test_classes_and_label_map_are_detection_options_of_file_listen_and_serve():
    import typer

    from streamdet.cli.app import app

    commands = typer.main.get_command(app).commands
    for option in ("--classes", "--label-map"):
        helps = {name: next(p.help for p in commands[name].params if option in p.opts)
                 for name in ("file", "listen", "serve")}
        assert len(set(helps.values())) == 1, helps


@pytest.mark.slow
def test_listen_url_reports_the_groups_and_publishes_them_to_mqtt(cli, audioset_model, scene_wav, tmp_path):
    from loopback_servers import Mosquitto, Subscriber

    broker = Mosquitto(tmp_path)
    try:
        subscriber = Subscriber(broker.url)
        result = cli("listen", "--url", f"kitchen={scene_wav}", "-m", audioset_model, "--hop", "0.25",
                     "--label-map", "household", "--classes", "alarm,dog", "--format", "jsonl",
                     "--mqtt", broker.url, "--mqtt-discovery-prefix", "ha", timeout=60)
        assert result.returncode == 0, result.stderr
        got = subscriber.wait_for(lambda ms: ms and ms[-1].payload == "offline")
        subscriber.stop()
    finally:
        broker.stop()
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    updates = [d for d in lines if d["type"] in ("onset", "offset")]
    assert {d["label"] for d in updates} == {"alarm", "dog"} and all(d["stream"] == "kitchen" for d in updates)
    assert _near(_events(result.stdout), [("alarm", 0.5, 2.5), ("dog", 3.5, 4.5)], 0.3), result.stdout
    sensors = sorted(m.topic for m in got if m.topic.startswith("ha/binary_sensor/") and m.topic.endswith("/config"))
    assert sensors == [f"ha/binary_sensor/streamdet_kitchen/{label}/config" for label in ("alarm", "dog")]
    assert [m.json() for m in got if m.topic == "streamdet/kitchen/events"] == updates


@pytest.mark.slow
def test_serve_answers_with_the_groups_and_per_request_thresholds_name_them(cli, audioset_model, scene_wav):
    from streamdet.client import stream_file

    process = subprocess.Popen([*cli.command, "serve", "--port", "0", "--model", audioset_model, "--device", "cpu",
                                "--hop", "0.25", "--label-map", "household", "--threads", "1"],
                               stderr=subprocess.PIPE, text=True, **cli.interruptible)
    try:
        lines = []
        while not any("serving on" in line for line in lines):
            line = process.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = lines[-1].split("serving on ")[1].split("/ ")[0]
        info = httpx.get(url + "/v1/models").json()["models"][0]
        assert info["labels"][:2] == ["alarm", "siren"] and len(info["labels"]) == 11
        assert info["groups"]["doorbell"] == ["Doorbell", "Ding-dong"] and "dog" in info["thresholds"]
        detected = httpx.post(url + "/v1/detect", content=scene_wav.read_bytes(), timeout=60).json()["events"]
        got = [(e["label"], e["onset"], e["offset"]) for e in detected]
        assert _near(got, [("alarm", 0.5, 2.5), ("dog", 3.5, 4.5)], 0.1), detected
        # a stream with its own thresholds for a new label gets a detector with the same map
        updates = list(stream_file(url, scene_wav, thresholds={"dog": [1.0, 1.0]}))
        assert {u.label for u in updates} == {"alarm"}, updates
    finally:
        process.terminate()
        process.wait(30)
        process.stderr.close()
