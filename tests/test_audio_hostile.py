"""Hostile audio inputs (issue 18, items 3, 6, 8 and the audio parts of 10): blocks bounded by time and size
whatever the file's rate, FIFOs opened once without hanging, non-UTF-8 file names, truncated files warned,
broken links in folders reported, unreadable files reported with the system's reason, absurd sample values
clipped with a warning instead of NaN scores."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from onnx_test_model import scene

import streamdet
from streamdet.audio_io import AudioFileError, read_blocks

SCENE = [("low", 0.5, 1.5), ("high", 2.0, 2.6)]


def _scene_wav(path: Path, sample_rate: int = 16000, **kwargs) -> Path:
    sf.write(path, scene(SCENE, 3.0, sample_rate), sample_rate, **kwargs)
    return path


def _events(det: streamdet.Detector, path: str | Path) -> list[tuple[str, float, float]]:
    return sorted(((e.label, round(e.onset, 3), round(e.offset, 3)) for e in det.detect_file(path)),
                  key=lambda e: (e[1], e[0]))


# --- item 3: blocks bounded by time and size, not by the file's frame count ------------------------------------
def test_a_low_rate_file_is_read_in_blocks_of_bounded_duration(tmp_path: Path) -> None:
    """65,536 frames at 1 Hz are 18 hours of audio: a block may not hold more than a minute, whatever the rate."""
    path = tmp_path / "one_hertz.wav"
    sf.write(path, np.zeros(3600, np.float32), 1, subtype="PCM_16")
    blocks = [b.shape[0] for b in read_blocks(path, 1 << 16)]
    assert sum(blocks) == 3600
    assert max(blocks) <= 60, blocks[:5]


def test_many_channels_do_not_make_a_block_larger(tmp_path: Path) -> None:
    path = tmp_path / "many.wav"
    sf.write(path, np.zeros((20000, 512), np.float32), 16000, subtype="PCM_16")
    blocks = [b.shape for b in read_blocks(path, 1 << 16)]
    assert sum(s[0] for s in blocks) == 20000
    assert max(s[0] * s[1] for s in blocks) <= 1 << 22  # 16 MiB of float32, not 128 MiB

    from streamdet.audio_io import block_frames_for

    assert block_frames_for(48000, 2) == 1 << 16 and block_frames_for(1, 1) == 60 and block_frames_for(0.01, 1) == 1


def test_a_sample_rate_beyond_ten_megahertz_is_refused(tmp_path: Path) -> None:
    """A header saying 2^31 - 1 Hz is not audio; resampling it cost 4 s of soxr flush per file."""
    data = np.zeros(1000, "<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 2**31 - 1, 0xFFFFFFFE, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "fast.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioFileError, match=f"^{path}: sample rate 2147483647 Hz is above the 10,000,000 Hz"):
        list(read_blocks(path))


ONE_HERTZ_HOUR = """
import resource, sys, time
import numpy as np, soundfile as sf
import streamdet
path, model = sys.argv[1], sys.argv[2]
sf.write(path, (np.random.default_rng(0).standard_normal(3600) * 0.1).astype(np.float32), 1, subtype="PCM_16")
det = streamdet.Detector(model, device="cpu", threads=1)
t = time.perf_counter()
det.detect_file(path)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, time.perf_counter() - t)
"""


@pytest.mark.slow
def test_an_hour_at_one_hertz_runs_in_bounded_memory_and_time(band_model: Path, tmp_path: Path) -> None:
    """The issue measured 923 MB and 425 s for this 7 KB file (one 57.6-million-sample block after resampling)."""
    result = subprocess.run([sys.executable, "-c", ONE_HERTZ_HOUR, str(tmp_path / "hour.wav"), str(band_model)],
                            capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr
    peak_mb, seconds = map(float, result.stdout.split())
    # measured 311-330 MB alone, ~250 MB of it soxr's 810-sample bursts at a 1:16000 ratio, and once 550 MB inside
    # the parallel CI run (cause not found); the old code took 923 MB and 425 s, the 64 KB variant past 6 GB
    assert peak_mb < 768, peak_mb
    assert seconds < 60, seconds  # measured 5 s


# --- item 6: FIFOs --------------------------------------------------------------------------------------------
def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    return path


def _feed(fifo: Path, data: bytes) -> threading.Thread:
    """Write ``data`` into ``fifo`` from a daemon thread (its open waits for a reader)."""

    def write() -> None:
        try:
            with open(fifo, "wb") as out:
                out.write(data)
        except BrokenPipeError:  # the reader went away early (the old code's first of two opens)
            pass

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_fifo_with_a_writer_is_read_once(cli, band_model: Path, tmp_path: Path) -> None:
    good = _scene_wav(tmp_path / "good.wav")
    fifo = _fifo(tmp_path)
    _feed(fifo, good.read_bytes())
    result = cli("file", fifo, good, "--model", band_model, "--format", "jsonl", timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    per_file = {name: sorted((r["label"], r["onset"], r["offset"]) for r in rows if r["file"] == name)
                for name in (str(fifo), str(good))}
    assert per_file[str(fifo)] == per_file[str(good)] and len(per_file[str(good)]) == 2


def test_a_fifo_without_a_writer_is_reported_and_the_batch_goes_on(cli, band_model: Path, tmp_path: Path) -> None:
    good = _scene_wav(tmp_path / "good.wav")
    fifo = _fifo(tmp_path)
    started = time.monotonic()
    result = cli("file", fifo, good, "--model", band_model, "--format", "jsonl", timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert f"error: {fifo}: a FIFO without a writer, or not audio" in result.stderr
    assert str(good) in result.stdout and "1 file(s)" in result.stderr


# --- item 8: non-UTF-8 file names -----------------------------------------------------------------------------
def test_a_non_utf8_file_name_is_read_and_written_back(cli, band_detector: streamdet.Detector, band_model: Path,
                                                        tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.wav"  # Latin-1 é: not UTF-8
    _scene_wav(tmp_path / "ref.wav")
    with open(raw, "wb") as out:
        out.write((tmp_path / "ref.wav").read_bytes())
    name = os.fsdecode(raw)
    assert _events(band_detector, name) == _events(band_detector, tmp_path / "ref.wav")
    table = cli("file", name, "--model", band_model, "--format", "table")
    assert table.returncode == 0, table.stderr
    assert "caf\\xe9.wav" in table.stdout
    out = tmp_path / "out.tsv"
    tsv = cli("file", name, "--model", band_model, "--output", out)
    assert tsv.returncode == 0, tsv.stderr
    assert b"/caf\xe9.wav\t0.5\t" in out.read_bytes()  # the name's own bytes, as the file system has them


# --- item 10: truncated files, broken links, unreadable files, absurd samples ---------------------------------
@pytest.mark.parametrize("fmt", ["wav", "aiff", "ogg", "mp3"])
def test_a_truncated_file_is_used_with_a_warning(band_detector: streamdet.Detector, tmp_path: Path, fmt: str) -> None:
    whole = tmp_path / f"whole.{fmt}"
    sf.write(whole, scene(SCENE, 12.0, noise=0.002), 16000)  # noise: an Ogg file of many pages
    data = whole.read_bytes()
    end = int(len(data) * 0.6)
    if fmt == "ogg":  # cut between pages (cut inside one, libsndfile cannot open it: the next test)
        end = data.rfind(b"OggS", 0, end)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[:end])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = _events(band_detector, whole)
    assert not [w for w in caught if "truncated" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cut_events = _events(band_detector, cut)
    messages = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith(f"{cut}: truncated: "), messages
    assert cut_events[0] == events[0]  # what is there was used


def test_an_ogg_cut_inside_a_page_is_refused_by_name(band_detector: streamdet.Detector, tmp_path: Path) -> None:
    """libsndfile cannot open an Ogg file whose last page is cut short (it seeks there for the length): that is
    an AudioFileError naming the file, never a silent or partial result."""
    data = _scene_wav(tmp_path / "whole.ogg").read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(AudioFileError, match=f"^{cut}: cannot decode audio"):
        band_detector.detect_file(cut)


def test_broken_links_in_a_folder_are_reported_not_skipped(cli, band_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    _scene_wav(folder / "good.wav")
    (folder / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    (folder / "loop.flac").symlink_to(folder / "loop.flac")
    result = cli("file", folder, "--model", band_model, "--format", "jsonl")
    assert result.returncode == 1
    assert f"error: {folder / 'gone.wav'}: broken symbolic link (to {tmp_path / 'deleted.wav'})" in result.stderr
    assert f"error: {folder / 'loop.flac'}: unusable symbolic link" in result.stderr
    assert "good.wav" in result.stdout and "1 file(s)" in result.stderr and "2 input(s) failed" in result.stderr


def _read_as_nobody(path: Path) -> str:
    """What reading ``path`` raises for an unprivileged user: run in a forked child that drops root (the
    interpreter under /root is out of that user's reach, so no new process could start)."""
    import soundfile  # noqa: F401  # loaded before the fork

    def attempt() -> str:
        try:
            list(read_blocks(path))
        except AudioFileError as exc:
            return str(exc)
        return "read"

    if os.geteuid() != 0:
        return attempt()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            message = attempt()
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
        os.write(w, message.encode("utf-8", "surrogateescape"))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


def test_an_unreadable_file_is_reported_with_the_system_reason() -> None:
    folder = Path(tempfile.mkdtemp(prefix="streamdet-unreadable-"))
    try:
        folder.chmod(0o755)
        path = _scene_wav(folder / "locked.wav")
        path.chmod(0)
        assert _read_as_nobody(path) == f"{path}: cannot open: Permission denied"
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def test_absurd_sample_values_are_clipped_with_a_warning(tmp_path: Path) -> None:
    """Samples around 1e18 (corrupt float data) overflowed the bundled model's log-mel front-end into NaN scores
    (75 % of the frames of this file), silently."""
    det = streamdet.Detector(device="cpu", threads=1)  # the bundled HTS-AT: its power spectrum overflows float32
    x = (np.random.default_rng(0).standard_normal(4 * 16000) * 0.1).astype(np.float32)
    x[16000:48000] *= 1e19
    path = tmp_path / "huge.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        track = det.score_track(path)
    det.close()
    messages = [str(w.message) for w in caught]
    assert any(m.startswith(f"{path}: 32000 samples beyond ±1e+06") and "clipped" in m for m in messages), messages
    assert np.isfinite(track.scores).all()
