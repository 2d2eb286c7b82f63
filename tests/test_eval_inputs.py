"""Hostile evaluation files (issue 18, item 7): other encodings and binary data are a clear error naming the file,
a UTF-8 byte-order mark is fine, absurd and negative times are refused before anything is allocated, and a stray
quote cannot swallow the rest of a file silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdet.events import Event
from streamdet.metrics import EvalInputError, read_durations, read_events, segment_based

HEADER = "filename\tonset\toffset\tevent_label\n"
GOOD = HEADER + "a.wav\t0.5\t2.0\tdog\nb.wav\t1.0\t3.0\tcat\n"


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    plain = read_events(_write(tmp_path, "plain.tsv", GOOD))
    assert read_events(_write(tmp_path, "bom.tsv", b"\xef\xbb\xbf" + GOOD.encode())) == plain
    assert read_durations(_write(tmp_path, "meta.tsv", b"\xef\xbb\xbffilename\tduration\na.wav\t10\n")) == {"a.wav": 10}
    jsonl = b'\xef\xbb\xbf{"file": "a.wav", "label": "dog", "onset": 0.5, "offset": 2.0}\n'
    assert read_events(_write(tmp_path, "bom.jsonl", jsonl)) == {"a.wav": [Event("dog", 0.5, 2.0, 1.0, "a.wav")]}


@pytest.mark.parametrize(("name", "data", "message"), [
    ("latin1.tsv", (HEADER + "a.wav\t0.5\t2.0\tcaf\u00e9\n").encode("latin-1"),
     "latin1.tsv:2: not UTF-8 text (byte 0xe9; Latin-1 or another 8-bit encoding?); save it as UTF-8"),
    ("utf16.tsv", GOOD.encode("utf-16"), "utf16.tsv: UTF-16 text; save it as UTF-8"),
    ("utf16be.csv", "filename,onset\n".encode("utf-16-be"), "utf16be.csv:1: NUL byte: binary data (or UTF-16"),
    ("binary.tsv", bytes(range(256)) * 4, "binary.tsv:1: NUL byte: binary data"),
    ("latin1.jsonl", '{"file": "caf\u00e9.wav", "label": "dog", "onset": 0, "offset": 1}\n'.encode("latin-1"),
     "latin1.jsonl:1: not UTF-8 text (byte 0xe9"),
    ("latin1_meta.tsv", "filename\tduration\ncaf\u00e9.wav\t3\n".encode("latin-1"), "latin1_meta.tsv:2: not UTF-8"),
])
def test_other_encodings_and_binary_data_name_the_file(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    path = _write(tmp_path, name, data)
    reader = read_durations if "meta" in name else read_events
    with pytest.raises(EvalInputError) as info:
        reader(path)
    assert str(info.value).startswith(f"{tmp_path / message.split(':')[0]}:")
    assert message.split(":", 1)[1] in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    (HEADER + "a.wav\t0\t1e9\tdog\n", "x.tsv:2: offset 1e+09 s is beyond 1e+06 s"),
    (HEADER + "a.wav\t-1\t2\tdog\n", "x.tsv:2: negative onset -1.0"),
    (HEADER + "a.wav\t-3\t-2\tdog\n", "x.tsv:2: negative onset -3.0"),
    (HEADER + 'a.wav\t0.5\t2.0\t"dog\nb.wav\t1.0\t3.0\tcat\nc.wav\t1\t2\tcow\n',
     "x.tsv:2: malformed quoting (unexpected end of data); a stray '\"'?"),
    (HEADER + 'a.wav\t0.5\t2.0\t"dog\nb.wav\t1.0\t3.0\tcat"\nc.wav\t1\t2\tcow\n',
     "x.tsv:2: a quoted field runs over lines 2-3; a stray '\"'?"),
    (HEADER + 'a.wav\t0.5\t2.0\t"do"g\n', "x.tsv:2: malformed quoting"),
])
def test_absurd_times_and_stray_quotes_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(EvalInputError) as info:
        read_events(_write(tmp_path, "x.tsv", text))
    assert str(info.value).startswith(f"{tmp_path}/{message}")


@pytest.mark.parametrize(("line", "message"), [
    ('{"file": "a.wav", "label": "dog", "onset": 0, "offset": 1e9}', "x.jsonl:1: offset 1e+09 s is beyond"),
    ('{"file": "a.wav", "label": "dog", "onset": -1, "offset": 1}', "x.jsonl:1: negative onset -1.0"),
    ('{"file": "a.wav", "label": "dog", "onset": 0, "offset": 1' + "0" * 400 + "}", "x.jsonl:1: offset must be a fin"),
    ('{"file": "a.wav", "label": "dog", "onset": 0, "offset": 1' + "0" * 5000 + "}", "x.jsonl:1: not usable JSON"),
    ('{"file": "a.wav", "label": "dog", "onset": 0, "offset": 1, "confidence": NaN}', "x.jsonl:1: confidence must"),
    ('{"file": "a.wav", "label": "", "onset": 0, "offset": 1}', "x.jsonl:1: needs non-empty string"),
    ("[" * 100_000, "x.jsonl:1: not usable JSON (RecursionError)"),
])
def test_jsonl_numbers_must_be_finite_and_in_range(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(EvalInputError) as info:
        read_events(_write(tmp_path, "x.jsonl", line + "\n"))
    assert str(info.value).startswith(f"{tmp_path}/{message}")


def test_durations_must_be_in_range(tmp_path: Path) -> None:
    with pytest.raises(EvalInputError, match=r"meta\.tsv:2: duration 1e\+09 must be from 0 to 1e\+06 s"):
        read_durations(_write(tmp_path, "meta.tsv", "filename\tduration\na.wav\t1e9\n"))


def test_quoted_fields_on_one_line_still_work(tmp_path: Path) -> None:
    """Quotes as the csv module and pandas write them (our own writers quote a name holding a tab or a quote)."""
    text = HEADER + '"a\tb.wav"\t0.5\t2.0\t"7"" single"\n'
    assert read_events(_write(tmp_path, "q.tsv", text)) == {"a\tb.wav": [Event('7" single', 0.5, 2.0, 1.0, "a\tb.wav")]}


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    with pytest.raises(EvalInputError, match=r"x\.tsv:5: negative onset"):
        read_events(_write(tmp_path, "x.tsv", HEADER + "a.wav\t0\t1\tdog\n\n\na.wav\t-1\t1\tdog\n"))


def test_segment_metric_refuses_a_table_too_large_to_allocate() -> None:
    events = {"a.wav": [Event("dog", 0.0, 900_000.0, 1.0, "a.wav")]}
    with pytest.raises(ValueError, match=r"a\.wav: 900000 s in segments of 0\.001 s for 1 classes needs"):
        segment_based(events, events, time_resolution=0.001)


def test_eval_command_reports_a_bad_file_by_name_without_a_traceback(cli, tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.tsv", GOOD)
    for bad in (_write(tmp_path, "big.tsv", HEADER + "a.wav\t0\t1e9\tdog\n"),
                _write(tmp_path, "latin.tsv", (HEADER + "a.wav\t0\t1\tcaf\u00e9\n").encode("latin-1")),
                _write(tmp_path, "quote.tsv", HEADER + 'a.wav\t0.5\t2.0\t"dog\nb.wav\t1.0\t3.0\tcat\n')):
        for args in ((bad, gt), (gt, bad)):
            result = cli("eval", *args, timeout=60)
            assert result.returncode == 1, (bad, result.stdout)
            assert result.stderr.startswith(f"error: {bad}:") and "Traceback" not in result.stderr
