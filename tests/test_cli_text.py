"""Untrusted strings are printed as text (issue 18, item 2): file names, model labels and metadata, ground-truth
labels and device names are never read as rich markup, and control characters are escaped, in the `file` table,
`models show/list`, the `eval` tables, the live view and the stderr lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from onnx_test_model import build_band_model, scene
from typer.testing import CliRunner

import streamdet
from streamdet.cli import app, listen_cmd, models_cmd

ESC = "\x1b"
BANDS = {"lo[/]w": (300.0, 700.0), "[b]mid": (900.0, 1500.0), "high": (2000.0, 3500.0)}


@pytest.fixture(scope="module")
def markup_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The band model with labels that are rich markup, and an ESC sequence and markup in its provenance."""
    provenance = json.dumps({"source": {"file": f"ckpt[/]{ESC}[31mred.pt", "sha256": "[bold]x"}, "recipe": "[/]"})
    return build_band_model(tmp_path_factory.mktemp("m") / "markup.onnx", bands=BANDS,
                            props={"provenance": provenance})


def _no_raw_control(text: str) -> None:
    assert ESC not in text and "\x07" not in text, repr(text)


def test_printable_escapes_what_a_terminal_acts_on_and_keeps_brackets() -> None:
    from streamdet.cli.text import plain, printable

    assert printable("[live] x.wav") == "[live] x.wav"
    assert printable("a[/]b") == "a[/]b"
    assert printable(f"m{ESC}[31mred\n\t\x07\x9b") == "m\\x1b[31mred\\n\\t\\x07\\x9b"
    assert printable("evil\u202etxt.wav") == "evil\\u202etxt.wav"  # a bidi override would reverse the rest
    assert printable(b"bad\xff.wav".decode("utf-8", "surrogateescape")) == "bad\\xff.wav"
    assert printable("caf\u00e9 \u266a") == "caf\u00e9 \u266a"  # ordinary non-ASCII stays
    assert plain("[red]x[/red]").plain == "[red]x[/red]"


def test_file_table_shows_bracketed_names_and_labels_literally(cli, markup_model: Path, tmp_path: Path) -> None:
    """`[/]` in a name used to raise MarkupError and lose every result; `[live] x.wav` lost its `[live]`."""
    x = scene([("low", 0.5, 1.5)], 3.0)
    (tmp_path / "a[").mkdir()
    names = [tmp_path / "a[" / "]b.wav", tmp_path / "[live] x.wav", tmp_path / f"esc{ESC}[2Jname.wav"]
    for name in names:
        sf.write(name, x, 16000)
    result = cli("file", *names, "--model", markup_model, "--format", "table")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in ("a[/]b.wav", "[live] x.wav", "esc\\x1b[2Jname.wav", "lo[/]w"):
        assert name in result.stdout, (name, result.stdout)
    assert "model markup.onnx: 3 classes (lo[/]w, [b]mid, high)" in result.stderr
    _no_raw_control(result.stdout + result.stderr)


def test_file_error_lines_escape_control_characters(cli, markup_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / f"bad{ESC}]0;title{chr(7)}.wav"
    broken.write_bytes(b"RIFF....WAVEnot audio")
    result = cli("file", broken, "--model", markup_model)
    assert result.returncode == 1
    assert "bad\\x1b]0;title\\x07.wav" in result.stderr
    _no_raw_control(result.stderr)


def test_models_show_prints_model_strings_as_text(cli, markup_model: Path) -> None:
    result = cli("models", "show", markup_model)
    assert result.returncode == 0, result.stderr
    for text in ("3: lo[/]w, [b]mid, high", "ckpt[/]\\x1b[31mred.pt", "sha256 [bold]x", "recipe: [/]"):
        assert text in result.stdout, (text, result.stdout)
    _no_raw_control(result.stdout)


def test_an_esc_label_is_refused_and_the_refusal_is_escaped(cli, tmp_path: Path) -> None:
    """A label with an ESC sequence is not a usable class name (it also goes into TSV files): `file` refuses the
    model, `models show` says why; neither lets the sequence reach the terminal."""
    model = build_band_model(tmp_path / "esc.onnx", bands={"mid": (900.0, 1500.0)},
                             props={"labels": json.dumps([f"mid{ESC}[31mRED"])})
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    result = cli("file", wav, "--model", model)
    assert result.returncode == 2
    assert "labels: label 1: 'mid\\x1b[31mRED' has control characters" in result.stderr
    shown = cli("models", "show", model)
    assert shown.returncode == 1 and "not a valid streamdet model" in shown.stderr
    assert "mid\\x1b[31mRED" in shown.stdout
    _no_raw_control(result.stderr + shown.stdout + shown.stderr)


def test_models_list_prints_model_strings_as_text(markup_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models_cmd, "bundled_models", lambda: [markup_model])
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "lo[/]w, [b]mid, high" in result.stdout and "band_energy_test" in result.stdout


def test_eval_tables_show_ground_truth_labels_literally(cli, tmp_path: Path) -> None:
    labels = ["[/]dog", "[bold]cat", f"bell{ESC}[5m"]
    rows = "".join(f"a.wav\t{i}\t{i + 0.5}\t{label}\n" for i, label in enumerate(labels))
    (tmp_path / "gt.tsv").write_text("filename\tonset\toffset\tevent_label\n" + rows)
    result = cli("eval", tmp_path / "gt.tsv", tmp_path / "gt.tsv", "--metric", "event,intersection,segment")
    assert result.returncode == 0, result.stderr
    for label in ("[/]dog", "[bold]cat", "bell\\x1b[5m"):
        assert result.stdout.count(label) == 3, (label, result.stdout)
    _no_raw_control(result.stdout)


def test_live_view_and_summary_show_labels_and_device_literally(markup_model: Path) -> None:
    from rich.console import Console

    det = streamdet.Detector(markup_model, device="cpu", hop=0.25, threads=1)
    x = scene([("low", 0.2, 1.5)], 1.5)
    with det.listen(sample_rate=16000, name="fake", open_device=False) as live:
        view = listen_cmd.LiveView(det, live, f"[/]mic{ESC}[31m")
        live.capture(x[:, None], len(x), None, None)
        view.add(live.get(timeout=10))
        console = Console(record=True, width=110)
        console.print(view.render())
        offsets = [u for u in live.close() if u.type == "offset"]
    det.close()
    listen_cmd._print_summary(console, offsets, offsets)
    text = console.export_text()
    assert "lo[/]w" in text and "[b]mid" in text and "[/]mic\\x1b[31m" in text
    assert text.count("lo[/]w") >= 3  # meter, recent events, summary table
    _no_raw_control(text)
