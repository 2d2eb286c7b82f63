"""Procedural generators: determinism and measured acoustic features (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
from streamdet.train.synth import alarm, doorbell, horn, knock, phone, siren, speech
from streamdet.train.synth.backgrounds import BACKGROUNDS
from streamdet.train.synth.core import Sound, frame_rms_db
from streamdet.train.synth.distractors import DISTRACTORS
from streamdet.train.synth.registry import ALERTS_LABELS, EVENT_GENERATORS, HELDOUT_PARAMS, generate_event

SR = 32000
needs_espeak = pytest.mark.skipif(not speech.available(), reason="espeak-ng not installed")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def spectrum(x: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectrum (Hann window) and its frequencies."""
    x = np.asarray(x, dtype=np.float64)
    return np.fft.rfftfreq(len(x), 1 / sr), np.abs(np.fft.rfft(x * np.hanning(len(x))))


def peak_freqs(x: np.ndarray, k: int, min_sep: float = 20.0, sr: int = SR) -> list[float]:
    """The ``k`` largest spectral peaks, at least ``min_sep`` Hz apart."""
    f, m = spectrum(x, sr)
    out: list[float] = []
    for i in np.argsort(m)[::-1]:
        if all(abs(f[i] - g) > min_sep for g in out):
            out.append(float(f[i]))
        if len(out) == k:
            break
    return out


def bursts(x: np.ndarray, threshold_db: float = -20.0, hop: float = 0.005) -> list[tuple[float, float]]:
    """On-segments of the envelope (independent of the generators' own segments)."""
    db = frame_rms_db(x, SR, hop=hop, win=hop)
    on = np.concatenate([[0], (db > db.max() + threshold_db).astype(np.int8), [0]])
    idx = np.flatnonzero(np.diff(on))
    return [(s * hop, e * hop) for s, e in zip(idx[::2], idx[1::2], strict=True)]


ALL_GENERATORS = [(name, fn) for name, fn in EVENT_GENERATORS.items() if name != "speech"] + list(DISTRACTORS.items())


@pytest.mark.parametrize(("name", "fn"), ALL_GENERATORS, ids=[n for n, _ in ALL_GENERATORS])
def test_generators_deterministic_and_well_formed(name, fn):
    for seed in range(3):
        a, b = fn(rng(seed), SR), fn(rng(seed), SR)
        assert isinstance(a, Sound)
        assert a.audio.dtype == np.float32 and a.audio.ndim == 1
        assert np.array_equal(a.audio, b.audio) and a.segments == b.segments
        assert np.isfinite(a.audio).all() and 0.1 < np.max(np.abs(a.audio)) <= 1.0
        dur = len(a.audio) / SR
        assert a.segments and 0.0 <= a.onset < a.offset <= dur + 1e-6
        assert all(s0 < s1 for s0, s1 in a.segments)
        assert all(a.segments[i][1] <= a.segments[i + 1][0] for i in range(len(a.segments) - 1))
    c, d = fn(rng(10), SR), fn(rng(11), SR)
    assert len(c.audio) != len(d.audio) or not np.array_equal(c.audio, d.audio)


@pytest.mark.parametrize("name", list(BACKGROUNDS))
def test_backgrounds_deterministic(name):
    a = BACKGROUNDS[name](rng(1), SR, 2.0)
    assert a.dtype == np.float32 and len(a) == 2 * SR
    assert np.array_equal(a, BACKGROUNDS[name](rng(1), SR, 2.0))
    assert not np.array_equal(a, BACKGROUNDS[name](rng(2), SR, 2.0))


def test_heldout_params_are_accepted_by_generators():
    for label in ALERTS_LABELS:
        if label == "speech" and not speech.available():
            continue
        snd = generate_event(label, rng(3), SR, **HELDOUT_PARAMS[label])
        assert snd.segments


def test_alarm_t3_piezo_tone_and_cadence():
    for seed in range(4):
        snd = alarm.generate(rng(seed), SR, kind="t3", t3_cycles=(1, 1), timing_scale_range=(1.0, 1.0))
        peak = peak_freqs(snd.audio, 1)[0]
        assert 2800 <= peak <= 3500
        b = bursts(snd.audio)
        assert len(b) == 3, b
        assert all(abs((e - s) - 0.5) < 0.03 for s, e in b)
        assert all(abs((b[i + 1][0] - b[i][1]) - 0.5) < 0.03 for i in range(2))
        assert snd.extent[0] == pytest.approx(0.0) and snd.extent[1] == pytest.approx(2.5, abs=0.01)


def test_alarm_t3_repeats_with_long_pause_and_t4_pattern():
    snd = alarm.generate(rng(5), SR, kind="t3", t3_cycles=(2, 2), timing_scale_range=(1.0, 1.0))
    b = bursts(snd.audio)
    assert len(b) == 6 and b[3][0] - b[2][1] == pytest.approx(1.5, abs=0.03)
    snd = alarm.generate(rng(6), SR, kind="t4", t4_cycles=(1, 1), timing_scale_range=(1.0, 1.0))
    b = bursts(snd.audio)
    assert len(b) == 4 and all(abs((e - s) - 0.1) < 0.02 for s, e in b)
    assert 2800 <= peak_freqs(snd.audio, 1)[0] <= 3500


def test_alarm_clock_beeps_repeat():
    snd = alarm.generate(rng(7), SR, kind="clock", clock_groups=(5, 5))
    assert len(bursts(snd.audio)) >= 5
    assert 1800 <= peak_freqs(snd.audio, 1)[0] <= 4200


def test_phone_us_ring_tones_and_cadence():
    snd = phone.generate(rng(1), SR, kind="us", cycles=(2, 2), freq_jitter=0.0, timing_scale_range=(1.0, 1.0))
    peaks = sorted(peak_freqs(snd.audio, 2))
    assert peaks[0] == pytest.approx(440, abs=2) and peaks[1] == pytest.approx(480, abs=2)
    b = bursts(snd.audio)
    assert len(b) == 2 and all(abs((e - s) - 2.0) < 0.05 for s, e in b)
    assert b[1][0] - b[0][1] == pytest.approx(4.0, abs=0.05)


def test_phone_uk_double_ring():
    snd = phone.generate(rng(2), SR, kind="uk", cycles=(1, 1), freq_jitter=0.0, timing_scale_range=(1.0, 1.0))
    assert sorted(peak_freqs(snd.audio, 2)) == pytest.approx([400, 450], abs=2)
    b = bursts(snd.audio)
    assert len(b) == 2 and all(abs((e - s) - 0.4) < 0.03 for s, e in b)
    assert b[1][0] - b[0][1] == pytest.approx(0.2, abs=0.03)
    eu = phone.generate(rng(3), SR, kind="eu", freq_jitter=0.0)
    assert peak_freqs(eu.audio, 1)[0] == pytest.approx(425, abs=2)


def test_phone_bell_is_struck_at_ringing_rate():
    snd = phone.generate(rng(4), SR, kind="bell", bell_rate_range=(20.0, 20.0), cycles=(1, 1))
    s0, s1 = snd.segments[0]
    x = snd.audio[int((s0 + 0.1) * SR) : int((s1 - 0.05) * SR)].astype(np.float64)
    env = np.abs(x)
    env = np.convolve(env, np.ones(80) / 80, mode="same")
    f, m = spectrum(env - env.mean())
    band = (f > 5) & (f < 100)
    # the alternate strikes give an envelope periodicity at 20 or 40 Hz
    assert min(abs(f[band][np.argmax(m[band])] - r) for r in (20.0, 40.0)) < 4


def test_horn_fundamentals_and_rich_harmonics():
    for seed in range(5):
        snd = horn.generate(rng(seed), SR)
        assert all(350 <= f <= 500 for f in snd.info["freqs"])
        f, m = spectrum(snd.audio)
        strong = f[(m > 0.1 * m.max()) & (f > 100)]
        assert 340 <= strong.min() <= 510
        assert np.sum(m[f > 1000] ** 2) > 0.2 * np.sum(m**2)  # pulse-like, not a sine


def test_knock_is_impulsive_and_low_resonant():
    for seed in range(5):
        snd = knock.generate(rng(seed), SR, sequences=(1, 1))
        x = snd.audio.astype(np.float64)
        crest = np.max(np.abs(x)) / np.sqrt(np.mean(x**2))
        assert crest > 5.0
        f, m = spectrum(x)
        assert np.sum(m[f < 1500] ** 2) > 0.6 * np.sum(m**2)
        assert 2 <= snd.info["hits"] <= 6
        # the label spans the first hit to the decay of the last one
        assert snd.onset < 0.02 and snd.offset > len(x) / SR - 0.25


def test_siren_in_band_and_doppler_shifts_pitch():
    for kind in siren.KINDS:
        snd = siren.generate(rng(1), SR, kind=kind, doppler_prob=0.0, duration_range=(4.0, 4.0))
        assert 350 <= peak_freqs(snd.audio, 1)[0] <= 2000
        assert snd.extent == pytest.approx((0.0, 4.0), abs=0.02)
    wail = siren.generate(rng(2), SR, kind="wail", doppler_prob=0.0, duration_range=(6.0, 6.0))
    track = [peak_freqs(wail.audio[i : i + 4096], 1)[0] for i in range(0, len(wail.audio) - 4096, 4096)]
    assert max(track) - min(track) > 400
    # a constant 1 kHz source passing at 30 m/s: higher pitch approaching, lower receding
    tone = siren.generate(
        rng(3),
        SR,
        kind="wail",
        doppler_prob=1.0,
        low_range=(1000.0, 1000.0),
        high_range=(1000.0, 1000.0),
        speed_range=(30.0, 30.0),
        distance_range=(5.0, 5.0),
        duration_range=(8.0, 8.0),
    )
    x = tone.audio
    early, late = peak_freqs(x[:SR], 1)[0], peak_freqs(x[-SR:], 1)[0]
    assert early > 1050 and late < 950


def test_doorbell_chime_decays_with_inharmonic_partials():
    snd = doorbell.generate(rng(1), SR, kind="ding_dong")
    db = frame_rms_db(snd.audio, SR)
    assert db[: int(0.3 / 0.01)].max() - db[-5:].mean() > 25  # decays away
    first = snd.audio[: int(0.25 * SR)]
    peaks = sorted(peak_freqs(first, 5, min_sep=40.0))
    ratios = [p / peaks[0] for p in peaks[1:]]
    assert any(abs(r - round(r)) > 0.15 for r in ratios), ratios
    buzz = doorbell.generate(rng(2), SR, kind="buzzer", presses=(1, 1))
    assert len(buzz.segments) == 1


def test_noise_colours_have_expected_slopes():
    for name, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        x = BACKGROUNDS[name](rng(0), SR, 4.0)
        f, m = spectrum(x)
        band = (f > 100) & (f < 8000)
        fit = np.polyfit(np.log10(f[band]), np.log10(m[band] ** 2 + 1e-20), 1)[0]
        assert fit == pytest.approx(slope, abs=0.25), name


def test_mains_hum_at_50_or_60_hz_harmonics():
    x = BACKGROUNDS["hum"](rng(4), SR, 4.0)
    peaks = peak_freqs(x, 3, min_sep=20.0)
    base = (
        50.0
        if min(abs(p / 50 - round(p / 50)) for p in peaks) < min(abs(p / 60 - round(p / 60)) for p in peaks)
        else 60.0
    )
    assert all(abs(p / base - round(p / base)) < 0.02 for p in peaks)


@needs_espeak
def test_speech_varied_and_deterministic():
    a, b = speech.generate(rng(0), SR), speech.generate(rng(0), SR)
    assert np.array_equal(a.audio, b.audio) and a.segments == b.segments
    assert len(a.audio) / SR > 0.5
    f, m = spectrum(a.audio)
    assert np.sum(m[(f > 80) & (f < 4000)] ** 2) > 0.8 * np.sum(m**2)
    voices = {v for s in range(6) for v in speech.generate(rng(s), SR).info["voices"]}
    assert len(voices) >= 4


def test_speech_missing_espeak_raises_clear_error(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    monkeypatch.setattr(speech, "_cache", {})
    assert not speech.available()
    with pytest.raises(speech.SpeechUnavailableError, match="espeak-ng"):
        speech.generate(rng(0), SR)
