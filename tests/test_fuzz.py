"""Fuzzing harness (issue 18): generated hostile inputs for the audio decoders, the model-metadata validator and the
evaluation readers. Every input must either be accepted (and then satisfy the reader's promises) or be rejected
with the reader's own exception class, whose message names the input (the file, or the metadata field). Any
other exception is a failure. Marked ``fuzz``; part of the plain ``python -m pytest -q`` run (about 30 s).

The counts per target are printed (``-s``) and recorded in benchmarks/RESULTS.md. ``test_atheris_*`` runs the
same targets under atheris (coverage-guided libFuzzer) when it is installed (Linux x86-64).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx_test_model import test_model_metadata

from streamdet.audio_io import AudioFileError, audio_info, read_blocks
from streamdet.metrics import EvalInputError, read_durations, read_events
from streamdet.metrics.io import MAX_EVENT_SECONDS
from streamdet.model_metadata import REQUIRED_FIELDS, ModelMetadata, ModelMetadataError

pytestmark = pytest.mark.fuzz

AUDIO_EXAMPLES = 2500
METADATA_EXAMPLES = 5000
EVAL_EXAMPLES = 3500
SEED = st.integers(0, 2**64 - 1)
"""Each input is built by a ``random.Random`` seeded by hypothesis: cheap to generate (10,000 inputs fit in
the test run), reproducible from the seed hypothesis prints when one fails."""
FUZZ = settings(deadline=None, database=None, print_blob=True, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])


def _report(name: str, seen: Counter) -> None:
    print(f"\nfuzz {name}: {seen['inputs']} inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())
                                                                  if k != "inputs"))


# --- audio decoders ---------------------------------------------------------------------------------------------
def _seed_files() -> list[bytes]:
    """Small valid files of every family libsndfile decodes here, to mutate."""
    t = np.arange(3200) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    specs = [("WAV", "PCM_16", 1), ("WAV", "FLOAT", 2), ("WAV", "PCM_U8", 1), ("FLAC", "PCM_16", 1),
             ("OGG", "VORBIS", 1), ("MP3", "MPEG_LAYER_III", 1), ("AIFF", "PCM_24", 2), ("AU", "ULAW", 1),
             ("CAF", "ALAC_16", 1), ("W64", "DOUBLE", 1), ("WAV", "IMA_ADPCM", 1), ("WAV", "GSM610", 1)]
    seeds = []
    for fmt, subtype, channels in specs:
        buf = io.BytesIO()
        data = np.stack([x] * channels, axis=1) if channels > 1 else x
        sf.write(buf, data, 8000 if subtype == "GSM610" else 16000, format=fmt, subtype=subtype)
        seeds.append(buf.getvalue())
    return seeds


SEEDS = _seed_files()
EXTREME_BYTES = [b"\xff" * 8, b"\x00" * 8, b"\x7f\xff\xff\xff" * 2, np.array([1e18, -np.inf], np.float32).tobytes()]
U16_VALUES = [0, 1, 2, 3, 8, 16, 24, 32, 64, 255, 1024, 65535]
U32_VALUES = [0, 1, 8000, 16000, 44100, 2**31 - 1, 2**32 - 1]


def _u(rnd: random.Random, bits: int, typical: list[int]) -> int:
    return rnd.choice(typical) if rnd.random() < 0.6 else rnd.getrandbits(bits)


def _wav_header(rnd: random.Random) -> bytes:
    """A RIFF/WAVE file whose every header field is drawn: format tag, channels, rate, sizes, bit depth."""
    fmt = b"".join(v.to_bytes(n, "little") for v, n in [
        (rnd.choice([1, 3, 6, 7, 0xFFFE, rnd.getrandbits(16)]), 2), (_u(rnd, 16, U16_VALUES), 2),
        (_u(rnd, 32, U32_VALUES), 4), (_u(rnd, 32, U32_VALUES), 4), (_u(rnd, 16, U16_VALUES), 2),
        (_u(rnd, 16, U16_VALUES), 2)]) + rnd.randbytes(rnd.choice([0, 2, 24]))
    payload = rnd.randbytes(rnd.randrange(2048))
    fmt_size = rnd.choice([len(fmt), 16, 18, 40, rnd.getrandbits(32)])
    data_size = rnd.choice([len(payload), len(payload), _u(rnd, 32, U32_VALUES)])
    body = (b"WAVEfmt " + fmt_size.to_bytes(4, "little") + fmt + b"data" + data_size.to_bytes(4, "little")
            + payload)
    return b"RIFF" + rnd.choice([len(body), _u(rnd, 32, U32_VALUES)]).to_bytes(4, "little") + body


def _mutated_seed(rnd: random.Random) -> bytes:
    """A valid file with bytes flipped, inserted, deleted, overwritten by extreme values, or cut short."""
    data = bytearray(rnd.choice(SEEDS))
    for _ in range(rnd.randint(1, 8)):
        if not data:
            break
        at = rnd.randrange(len(data))
        op = rnd.choice(["flip", "flip", "insert", "delete", "extreme", "cut"])
        if op == "flip":
            data[at] ^= 1 << rnd.randrange(8)
        elif op == "insert":
            data[at:at] = rnd.randbytes(rnd.randint(1, 64))
        elif op == "delete":
            del data[at : at + rnd.randint(1, 256)]
        elif op == "extreme":
            data[at : at + 8] = rnd.choice(EXTREME_BYTES)
        else:
            del data[at:]
    return bytes(data)


def _audio_bytes(rnd: random.Random) -> bytes:
    kind = rnd.random()
    if kind < 0.6:
        return _mutated_seed(rnd)
    return _wav_header(rnd) if kind < 0.9 else rnd.randbytes(rnd.randrange(4096))


def _decode(path: Path) -> str:
    """Read the header and every block, as file mode does; the outcome's name."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = audio_info(path)
        frames = sum(block.shape[0] for block in read_blocks(path, allow_empty=True))
    assert info.sample_rate > 0 and info.channels > 0
    assert frames >= 0
    return "decoded, warned" if caught else "decoded"


def test_fuzz_audio_decoders() -> None:
    seen: Counter = Counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.audio"

        @settings(FUZZ, max_examples=AUDIO_EXAMPLES)
        @given(SEED)
        def run(seed: int) -> None:
            path.write_bytes(_audio_bytes(random.Random(seed)))
            seen["inputs"] += 1
            try:
                seen[_decode(path)] += 1
            except AudioFileError as exc:
                assert str(exc).startswith(f"{path}: ") and exc.reason, str(exc)
                seen["AudioFileError"] += 1

        run()
    _report("audio decoders", seen)
    assert seen["inputs"] >= AUDIO_EXAMPLES and seen["decoded"] and seen["AudioFileError"]


# --- model metadata ---------------------------------------------------------------------------------------------
BASE_PROPS = test_model_metadata().to_props()
NUMBER_TEXTS = ["inf", "-inf", "nan", "1e400", "-0", "0x10", "1_000", " 16000 ", "16000.0", "1" * 5000, "", "true",
                "16000", "0.05", "1e-300", "2147483648"]
LABELS = ["low", "mid", "high", "", " x", "a\nb", "\x1b[31m", "x" * 300, "[/]", "\u202e"]
FIELDS = (*REQUIRED_FIELDS, "thresholds", "postprocess")
FIELD_NAMES = "|".join(re.escape(f) for f in (*FIELDS, "framewise", "clipwise"))


def _text(rnd: random.Random, size: int = 12) -> str:
    """Random text, often with the characters parsers trip on."""
    pool = "ab01.-e \t\n\"'[]{}:,\x00\x1b\u00e9\u2028\ud800"
    return "".join(rnd.choice(pool) if rnd.random() < 0.7 else chr(rnd.randrange(0x110000))
                   for _ in range(rnd.randrange(size)))


def _number(rnd: random.Random) -> object:
    return rnd.choice([rnd.uniform(-2, 2), rnd.randint(-10, 10**6), 10.0 ** rnd.randint(-320, 308), math.inf,
                       -math.inf, math.nan, True, False, None, _text(rnd, 4), 10**rnd.randint(20, 400)])


def _json(rnd: random.Random, depth: int = 0) -> object:
    """A random JSON value: nested lists and objects of numbers, strings, booleans and null."""
    kind = rnd.randrange(6 if depth < 3 else 4)
    if kind < 2:
        return _number(rnd)
    if kind == 2:
        return rnd.choice([*LABELS, _text(rnd)])
    if kind == 3:
        return None
    if kind == 4:
        return [_json(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {rnd.choice([*LABELS, "min_duration", "min_gap"]): _json(rnd, depth + 1) for _ in range(rnd.randrange(4))}


def _dumps(value: object) -> str:
    try:
        return json.dumps(value)
    except ValueError:  # an integer past the digit limit
        return "1" * 5000


def _field_value(rnd: random.Random, name: str) -> str:
    """A hostile value for one metadata field: numbers as text, near-valid structures, any JSON, any text."""
    near = {
        "labels": lambda: _dumps([rnd.choice([*LABELS, _text(rnd)]) for _ in range(rnd.randrange(5))]),
        "thresholds": lambda: _dumps({rnd.choice(LABELS): [_number(rnd) for _ in range(rnd.randrange(4))]
                                      for _ in range(rnd.randrange(4))}),
        "postprocess": lambda: _dumps({rnd.choice(LABELS): {rnd.choice(["min_duration", "min_gap", "x"]): _number(rnd)}
                                       for _ in range(rnd.randrange(4))}),
        "output_activation": lambda: rnd.choice(["sigmoid", "softmax", "relu", ""]),
        "precision": lambda: rnd.choice(["fp32", "fp16", "int8", "fp64"]),
        "streamdet_format": lambda: rnd.choice(["1", "2", "", "1" * 5000]),
    }.get(name, lambda: rnd.choice([*NUMBER_TEXTS, repr(_number(rnd))]))
    return rnd.choice([near, near, lambda: _dumps(_json(rnd)), lambda: _text(rnd, 40)])()


def _props(rnd: random.Random) -> dict:
    """The valid test-model metadata with one to three fields replaced by hostile values, or dropped."""
    props = dict(BASE_PROPS)
    for name in rnd.sample(FIELDS, rnd.randint(1, 3)):
        if rnd.random() < 0.1:
            props.pop(name, None)
        else:
            props[name] = _field_value(rnd, name)
    return props


def _shape(rnd: random.Random) -> list:
    return [rnd.choice([rnd.randint(-2, 40000), 16000, 20, 3, "batch", None]) for _ in range(rnd.randrange(5))]


def test_fuzz_model_metadata_validator() -> None:
    seen: Counter = Counter()

    @settings(FUZZ, max_examples=METADATA_EXAMPLES)
    @given(SEED)
    def run(seed: int) -> None:
        rnd = random.Random(seed)
        props = _props(rnd)
        seen["inputs"] += 1
        try:
            meta = ModelMetadata.from_props(props)
        except ModelMetadataError as exc:
            assert re.match(rf"^({FIELD_NAMES})\b", str(exc)), str(exc)  # names the field
            assert len(str(exc)) < 600
            seen["ModelMetadataError"] += 1
            return
        assert ModelMetadata.from_props(meta.to_props()) == meta  # what is accepted round-trips
        assert 0 < meta.sample_rate <= 1_000_000 and 0 < meta.window_samples <= 1 << 24
        assert all(label and label.isprintable() for label in meta.labels)
        seen["accepted"] += 1
        try:
            meta.check_shapes(_shape(rnd), _shape(rnd), _shape(rnd))
            seen["shapes accepted"] += 1
        except ModelMetadataError as exc:
            assert re.match(rf"^({FIELD_NAMES})\b", str(exc)), str(exc)
            seen["shapes refused"] += 1

    run()
    _report("model metadata", seen)
    assert seen["inputs"] >= METADATA_EXAMPLES and seen["accepted"] and seen["ModelMetadataError"]


# --- evaluation readers -----------------------------------------------------------------------------------------
CELLS = ["a.wav", "b.wav", "dog", "cat", "0", "0.5", "2", "1e9", "-1", "nan", "inf", "1e400", "", '"', '""', "1e6"]
HEADERS = [["filename", "onset", "offset", "event_label"], ["file", "label", "onset", "offset", "confidence"],
           ["filename", "duration"], ["onset"], []]
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-be"]


def _delimited(rnd: random.Random, delimiter: str) -> str:
    header = rnd.choice(HEADERS)
    rows = [[rnd.choice(CELLS) if rnd.random() < 0.8 else _text(rnd, 8) for _ in range(rnd.randrange(6))]
            for _ in range(rnd.randrange(8))]
    lines = ([delimiter.join(header)] if header else []) + [delimiter.join(r) for r in rows]
    return rnd.choice(["\n", "\r\n"]).join(lines) + rnd.choice(["", "\n"])


def _jsonl(rnd: random.Random) -> str:
    lines = []
    for _ in range(rnd.randrange(6)):
        if rnd.random() < 0.2:
            lines.append(_text(rnd, 30))
            continue
        event = {"file": rnd.choice(["a.wav", "", _json(rnd)]), "label": rnd.choice(["dog", "", _json(rnd)]),
                 "onset": rnd.choice([_number(rnd), 0.5]), "offset": rnd.choice([_number(rnd), 2.0]),
                 "confidence": _number(rnd)}
        lines.append(_dumps({k: v for k, v in event.items() if rnd.random() < 0.9}))
    return "\n".join(lines)


def _eval_file(rnd: random.Random) -> tuple[str, bytes]:
    suffix = rnd.choice([".tsv", ".csv", ".jsonl", ".txt"])
    if rnd.random() < 0.1:
        return suffix, rnd.randbytes(rnd.randrange(512))
    text = _jsonl(rnd) if suffix == ".jsonl" else _delimited(rnd, "," if suffix == ".csv" else "\t")
    return suffix, text.encode(rnd.choice(ENCODINGS), errors="replace")


def _check_table(table: dict) -> None:
    for name, events in table.items():
        assert name
        for ev in events:
            assert 0 <= ev.onset <= ev.offset <= MAX_EVENT_SECONDS and math.isfinite(ev.confidence)


def test_fuzz_evaluation_readers() -> None:
    seen: Counter = Counter()
    with tempfile.TemporaryDirectory() as folder:

        @settings(FUZZ, max_examples=EVAL_EXAMPLES)
        @given(SEED)
        def run(seed: int) -> None:
            suffix, data = _eval_file(random.Random(seed))
            path = Path(folder) / f"input{suffix}"
            path.write_bytes(data)
            seen["inputs"] += 1
            readers: list[tuple[str, Callable]] = [("events", read_events)]
            if suffix != ".jsonl":
                readers.append(("durations", read_durations))
            for what, reader in readers:
                try:
                    result = reader(path)
                except EvalInputError as exc:
                    assert str(exc).startswith(f"{path}"), str(exc)  # names the file (and the line)
                    seen[f"{what}: EvalInputError"] += 1
                    continue
                if what == "events":
                    _check_table(result)
                else:
                    assert all(0 <= d <= MAX_EVENT_SECONDS for d in result.values())
                seen[f"{what}: accepted"] += 1

        run()
    _report("evaluation readers", seen)
    assert seen["inputs"] >= EVAL_EXAMPLES and seen["events: accepted"] and seen["events: EvalInputError"]


# --- the same targets under atheris -------------------------------------------------------------------------------
ATHERIS_RUNS = 1500


@pytest.mark.parametrize("target", ["audio", "metadata", "eval"])
def test_atheris(target: str, tmp_path: Path) -> None:
    """Coverage-guided fuzzing of one target in a subprocess (libFuzzer exits the process it runs in)."""
    pytest.importorskip("atheris")
    script = Path(__file__).with_name("fuzz_atheris.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(script.parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(script), target, f"-atheris_runs={ATHERIS_RUNS}",
                             "-max_len=4096", "-rss_limit_mb=2048", "-timeout=20"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    done = re.findall(r"Done (\d+) (?:runs )?in", result.stderr)
    assert done and int(done[-1]) >= ATHERIS_RUNS - 1, result.stderr[-2000:]
    print(f"\nfuzz atheris {target}: {done[-1]} inputs, no crash")
