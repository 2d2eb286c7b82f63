"""Coverage-guided fuzzing with atheris (libFuzzer) of the targets of test_fuzz.py; run by ``test_atheris``.

``python tests/fuzz_atheris.py TARGET [libFuzzer flags]``, in an empty folder it may write to, with TARGET
``audio``, ``metadata`` or ``eval``. Each input is accepted or rejected with the target's own exception
(AudioFileError, ModelMetadataError, EvalInputError); anything else escapes, and atheris reports it as a crash
(exit status not 0).
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import atheris
import numpy as np
import soundfile as sf

with atheris.instrument_imports(include=["streamdet"]):
    from streamdet.audio_io import AudioFileError, audio_info, read_blocks
    from streamdet.metrics import EvalInputError, read_durations, read_events
    from streamdet.model_metadata import ModelMetadata, ModelMetadataError

FOLDER = Path.cwd()  # the caller's (test_atheris: a pytest tmp_path); libFuzzer exits without cleaning up
PROPS = {"streamdet_format": "1", "model_type": "t", "labels": '["low", "mid", "high"]', "sample_rate": "16000",
         "window_samples": "16000", "step_seconds": "0.05", "output_activation": "sigmoid", "precision": "fp32",
         "frontend": "{}", "provenance": "{}", "thresholds": '{"low": [0.5, 0.3]}',
         "postprocess": '{"low": {"min_duration": 0.5}}'}


def audio(data: bytes) -> None:
    """Decode ``data`` as an audio file: header and every block."""
    path = FOLDER / "input.audio"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            audio_info(path)
            for _ in read_blocks(path, allow_empty=True):
                pass
        except AudioFileError as exc:
            assert str(exc).startswith(str(path))


def metadata(data: bytes) -> None:
    """Replace, keep or drop each metadata field with strings drawn from ``data``; validate."""
    fdp = atheris.FuzzedDataProvider(data)
    props = {}
    for name, value in PROPS.items():
        choice = fdp.ConsumeIntInRange(0, 3)
        if choice == 0:
            props[name] = value
        elif choice == 1:
            props[name] = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 64))
        elif choice == 2:  # the valid value with a few drawn characters inserted
            at = fdp.ConsumeIntInRange(0, len(value))
            props[name] = value[:at] + fdp.ConsumeUnicode(fdp.ConsumeIntInRange(1, 8)) + value[at:]
    try:
        meta = ModelMetadata.from_props(props)
    except ModelMetadataError:
        return
    assert ModelMetadata.from_props(meta.to_props()) == meta


def evaluation(data: bytes) -> None:
    """Read ``data`` as a TSV, CSV or JSONL evaluation file (the first byte picks the layout)."""
    suffix = (".tsv", ".csv", ".jsonl")[data[0] % 3] if data else ".tsv"
    path = FOLDER / f"input{suffix}"
    path.write_bytes(data[1:])
    for reader in (read_events, read_durations):
        try:
            reader(path)
        except EvalInputError as exc:
            assert str(exc).startswith(str(path))


def _corpus(target: str) -> list[str]:
    """A folder of valid starting inputs for ``target``."""
    corpus = FOLDER / "corpus"
    corpus.mkdir()
    if target == "audio":
        x = np.sin(np.arange(1600) / 5).astype(np.float32) * 0.3
        for i, (fmt, subtype) in enumerate([("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"),
                                            ("AIFF", "PCM_24"), ("WAV", "FLOAT")]):
            buf = io.BytesIO()
            sf.write(buf, x, 16000, format=fmt, subtype=subtype)
            (corpus / f"seed{i}").write_bytes(buf.getvalue())
    elif target == "eval":
        (corpus / "tsv").write_bytes(b"\x00filename\tonset\toffset\tevent_label\na.wav\t0.5\t1.5\tdog\n")
        (corpus / "jsonl").write_bytes(b'\x02{"file": "a.wav", "label": "dog", "onset": 0, "offset": 1}\n')
    else:
        (corpus / "seed").write_bytes(bytes(range(64)))
    return [str(corpus)]


if __name__ == "__main__":
    target = sys.argv[1]
    function = {"audio": audio, "metadata": metadata, "eval": evaluation}[target]
    atheris.Setup([sys.argv[0], *sys.argv[2:], *_corpus(target)], function)
    atheris.Fuzz()
