"""Soak (issue 18): an hour of audio with known events, faster than real time, through random-sized pushes,
file mode and ``streamdet listen --url FILE --pace``: identical events, and memory that stays flat (sampled
every 10 simulated minutes). benchmarks/soak.py runs the same for 24 hours."""

from __future__ import annotations

from pathlib import Path

import pytest
from soak_audio import event_key, file_soak, listen_soak, push_soak, write_flac

import streamdet

MINUTES = 60
FLAT_MB = 15.0  # growth allowed between 20 simulated minutes and the end (allocator noise, not a leak)


def _growth(samples: list[tuple[float, float]]) -> float:
    later = [mb for hours, mb in samples if hours >= 1 / 3]
    return max(later) - later[0]


@pytest.mark.slow
def test_an_hour_three_ways_same_events_flat_memory(band_model: Path, cli, tmp_path: Path) -> None:
    det = streamdet.Detector(band_model, device="cpu", hop=0.5, threads=1)
    flac = write_flac(tmp_path / "hour.flac", MINUTES)
    pushed, push_rss = push_soak(det, MINUTES, 600, max_push=120)
    filed, file_rss = file_soak(det, flac, 600)
    reference = [event_key(e) for e in filed]
    assert len(reference) > 20
    assert [event_key(e) for e in pushed] == reference
    assert _growth(push_rss) < FLAT_MB, push_rss
    assert _growth(file_rss) < FLAT_MB, file_rss

    offsets, listen_rss, err, code = listen_soak(cli.command, band_model, flac, pace=600, every_wall=0.25,
                                                 timeout=120)
    assert code == 0, err
    assert "soak: listened 3600.0 s; lost 0.00 s" in err
    assert offsets == reference
    assert len(listen_rss) > 10 and _growth(listen_rss) < FLAT_MB, listen_rss


@pytest.mark.parametrize(("args", "message"), [(["--pace", "0", "--url", "x.wav"], "--pace must be a positive"),
                                               (["--pace", "nan", "--url", "x.wav"], "--pace must be a positive"),
                                               (["--pace", "2"], "--pace applies to --url files only")])
def test_pace_is_checked(cli, band_model: Path, args: list[str], message: str) -> None:
    result = cli("listen", "--model", band_model, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.slow
def test_a_file_read_faster_than_the_detector_waits_for_it(band_model: Path, tmp_path: Path) -> None:
    """An unpaced local file (decoded far faster than the detector runs) holds only about MAX_QUEUED_SECONDS of
    decoded audio at a time: before the back-pressure the whole file queued up (4 GB over 24 h at --pace 1000)."""
    import tracemalloc

    from streamdet.sources import ReaderSettings, SourceGroup

    flac = write_flac(tmp_path / "ten.flac", 10)
    det = streamdet.Detector(band_model, device="cpu", hop=0.5, threads=1)
    tracemalloc.start()
    try:
        with SourceGroup(det, [f"f={flac}"], settings=ReaderSettings(realtime=False)) as group:
            items = list(group)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    offsets = [(u.label, round(u.onset, 6), round(u.offset, 6)) for u in items if getattr(u, "type", "") == "offset"]
    assert offsets == [event_key(e) for e in det.detect_file(flac)]
    assert peak < 10e6, peak  # the 10 minutes at 16 kHz are 38 MB
