"""Front-ends against the official implementations: HTS-AT log-mel (torchlibrosa/librosa) and AST Kaldi fbank
(torchaudio.compliance.kaldi, transformers' ASTFeatureExtractor)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from streamdet.models.frontends import (
    KaldiFbankFrontend,
    LogMelFrontend,
    hz_to_mel_slaney,
    kaldi_fbank_kernels,
    kaldi_mel_banks,
    mel_to_hz_slaney,
    slaney_mel_filterbank,
    stft_kernels,
)
from streamdet.models.layers import resize_time_bicubic

FIXTURES = Path(__file__).parent / "fixtures"
HTSAT_CKPT = FIXTURES / "htsat" / "tiny_state_dict.pt"
HF_TINY = FIXTURES / "ast" / "hf_tiny"
OFFICIAL_AST = FIXTURES / "ast" / "official_tiny"


@pytest.fixture(scope="module")
def htsat_state() -> dict[str, torch.Tensor]:
    return torch.load(HTSAT_CKPT, map_location="cpu", weights_only=True)["state_dict"]


# -------------------------------------------------------------------------------------------------------- HTS-AT


def test_slaney_mel_filterbank_equals_the_stored_melw_exactly(htsat_state) -> None:
    stored = htsat_state["sed_model.logmel_extractor.melW"].numpy()
    ours = slaney_mel_filterbank(32000, 1024, 64, 50.0, 14000.0)
    assert ours.shape == stored.shape == (513, 64)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, stored)
    # each Slaney-normalised triangle has area ~ 1 in Hz (2 / bandwidth peak height)
    hz = np.linspace(0, 16000, 513)
    areas = np.trapezoid(ours, hz, axis=0) if hasattr(np, "trapezoid") else np.trapz(ours, hz, axis=0)
    assert np.allclose(areas, 1.0, atol=0.06)  # narrow low triangles are coarsely sampled by the FFT grid
    assert np.allclose(areas[32:], 1.0, atol=0.005)


def test_slaney_mel_scale_round_trips_and_is_linear_below_1khz() -> None:
    freqs = np.array([0.0, 50.0, 500.0, 999.0, 1000.0, 4000.0, 14000.0])
    assert np.allclose(mel_to_hz_slaney(hz_to_mel_slaney(freqs)), freqs, rtol=1e-12, atol=1e-9)
    assert hz_to_mel_slaney(600.0) == pytest.approx(9.0)  # 600 / (200/3)
    assert hz_to_mel_slaney(1000.0) == pytest.approx(15.0)


def test_stft_kernels_equal_the_stored_torchlibrosa_kernels(htsat_state) -> None:
    real, imag = stft_kernels(1024)
    assert np.array_equal(real, htsat_state["sed_model.spectrogram_extractor.stft.conv_real.weight"][:, 0].numpy())
    assert np.array_equal(imag, htsat_state["sed_model.spectrogram_extractor.stft.conv_imag.weight"][:, 0].numpy())


@pytest.mark.parametrize("case, frames", [("10s", 1001), ("6_5s", 651)])
def test_logmel_matches_the_official_frontend(case: str, frames: int) -> None:
    data = np.load(FIXTURES / "htsat" / "tiny_io.npz")
    frontend = LogMelFrontend()
    with torch.no_grad():
        logmel = frontend(torch.from_numpy(data[f"wave_{case}"]))
    expected = data[f"{case}_logmel"][:, 0]
    assert logmel.shape == expected.shape == (1, frames, 64)
    assert frontend.num_frames(data[f"wave_{case}"].shape[1]) == frames
    np.testing.assert_allclose(logmel.numpy(), expected, rtol=0, atol=1e-5)


def test_logmel_rejects_bad_shapes() -> None:
    frontend = LogMelFrontend()
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        frontend(torch.zeros(1000))
    with pytest.raises(ValueError, match="too short"):
        frontend(torch.zeros(1, 400))


# -------------------------------------------------------------------------------------------------------- AST


def _kaldi_fbank_float64(wave: np.ndarray) -> np.ndarray:
    """Kaldi fbank written out step by step in float64 (reference for precision)."""
    n = 1 + (len(wave) - 400) // 160
    frames = np.stack([wave[i * 160 : i * 160 + 400] for i in range(n)]).astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    emphasised = frames.copy()
    emphasised[:, 1:] -= 0.97 * frames[:, :-1]
    emphasised[:, 0] -= 0.97 * frames[:, 0]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)
    power = np.abs(np.fft.rfft(emphasised * window, 512)) ** 2
    banks = np.concatenate([kaldi_mel_banks(128, 512, 16000).astype(np.float64), np.zeros((128, 1))], axis=1)
    return np.log(np.maximum(power @ banks.T, 1.1920928955078125e-07))


def test_kaldi_mel_banks_match_torchaudio() -> None:
    data = np.load(HF_TINY / "frontend_compare.npz")
    ours = kaldi_mel_banks(128, 512, 16000, 20.0, 0.0)
    assert ours.shape == (128, 256)
    np.testing.assert_allclose(ours, data["mel_banks_kaldi"], rtol=0, atol=2e-5)
    assert not ours[3].any()  # filter 3 (0-based) covers no FFT bin
    assert (ours.sum(axis=1) > 0).sum() == 127


def test_kaldi_kernels_fold_dc_removal_preemphasis_and_window() -> None:
    rng = np.random.default_rng(3)
    frame = rng.standard_normal(400) + 0.7
    real, imag = kaldi_fbank_kernels(400, 512)
    x = frame - frame.mean()
    y = x - 0.97 * np.concatenate([[x[0]], x[:-1]])
    spectrum = np.fft.rfft(y * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)), 512)
    np.testing.assert_allclose(real.astype(np.float64) @ frame, spectrum.real, atol=2e-4)
    np.testing.assert_allclose(imag.astype(np.float64) @ frame, spectrum.imag, atol=2e-4)


@pytest.mark.parametrize("case, frames", [("10s", 1022), ("4s", 398)])
def test_kaldi_fbank_matches_torchaudio_and_float64(case: str, frames: int) -> None:
    wave = np.load(HF_TINY / "tiny_io.npz")[f"wave_{case}"]
    official = np.load(HF_TINY / "frontend_compare.npz")[f"fbank_kaldi_{case}"]
    with torch.no_grad():
        ours = KaldiFbankFrontend().fbank(torch.from_numpy(wave)[None])[0].numpy()
    assert ours.shape == official.shape == (frames, 128)
    reference = _kaldi_fbank_float64(wave)
    # torchaudio itself is float32 (max 1.1e-3 / 1.9e-3 from float64 in low-energy bins); we are closer to float64
    assert np.abs(ours - reference).max() < 5e-4
    assert np.abs(ours - official).max() < 2.5e-3
    assert np.abs(ours - official).mean() < 2e-5


def test_fbank_features_match_the_official_ast_input() -> None:
    data = np.load(OFFICIAL_AST / "official_tiny_io.npz")
    with torch.no_grad():
        ours = KaldiFbankFrontend()(torch.from_numpy(data["wave_10s"])[None]).numpy()
    assert ours.shape == (1, 1024, 128)
    np.testing.assert_allclose(ours, data["fbank_input"], rtol=0, atol=2.5e-4)
    # the two padded frames read mean / (2 std)
    np.testing.assert_allclose(ours[0, 1022:], 4.2677393 / (2 * 4.5689974), atol=1e-6)


def _signals() -> dict[str, np.ndarray]:
    sr, rng = 16000, np.random.default_rng(0)

    def t(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * sr)) / sr

    return {
        "noise": 0.1 * rng.standard_normal(int(10.24 * sr)),
        "sine": 0.5 * np.sin(2 * np.pi * 1000 * t(10.24)),
        "chirp": 0.3 * np.sin(2 * np.pi * (100 * t(5) + 700 * t(5) ** 2)),
        "quiet": 1e-4 * rng.standard_normal(3 * sr),
        "clipped_square": np.clip(3 * np.sign(np.sin(2 * np.pi * 440 * t(4))), -1, 1),
        "dc_offset": 0.5 + 0.05 * rng.standard_normal(6 * sr),
        "impulses": (np.arange(4 * sr) % 4000 == 0).astype(np.float64),
        "longer_than_target": 0.2 * rng.standard_normal(12 * sr),
        "silence": np.zeros(2 * sr),
    }


def test_fbank_matches_transformers_ast_feature_extractor_on_several_signals() -> None:
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = transformers.ASTFeatureExtractor()
        frontend = KaldiFbankFrontend()
        for name, wave in _signals().items():
            wave = wave.astype(np.float32)
            expected = extractor(wave, sampling_rate=16000, return_tensors="np")["input_values"][0]
            with torch.no_grad():
                ours = frontend(torch.from_numpy(wave)[None])[0].numpy()
            assert ours.shape == expected.shape == (1024, 128), name
            diff = np.abs(ours - expected)
            assert diff.max() < 5e-4, (name, diff.max())
            assert diff.mean() < 1e-5, (name, diff.mean())


def test_fbank_rejects_waveforms_shorter_than_a_frame() -> None:
    frontend = KaldiFbankFrontend()
    assert frontend.num_frames(399) == 0 and frontend.num_frames(400) == 1 and frontend.num_frames(163840) == 1022
    with pytest.raises(ValueError, match="shorter than one frame"):
        frontend(torch.zeros(1, 399))


def test_frontend_configs_are_json_able() -> None:
    import json

    for frontend in (LogMelFrontend(), KaldiFbankFrontend()):
        config = json.loads(json.dumps(frontend.config()))
        assert config["sample_rate"] in (16000, 32000)


# -------------------------------------------------------------------------------------------------------- resampling


@settings(max_examples=25, deadline=None)
@given(in_size=st.integers(min_value=2, max_value=1024), batch=st.integers(min_value=1, max_value=3))
def test_bicubic_time_stretch_matches_torch_interpolate(in_size: int, batch: int) -> None:
    x = torch.randn(batch, in_size, 8, generator=torch.Generator().manual_seed(in_size)) * 20
    expected = F.interpolate(x[:, None], (1024, 8), mode="bicubic", align_corners=True)[:, 0]
    ours = resize_time_bicubic(x, 1024, dim=1)
    assert ours.shape == expected.shape
    # same taps and weights; the weights differ from PyTorch's FMA-rounded ones by at most an ulp or two
    assert (ours - expected).abs().max().item() <= 2e-6 * max(1.0, x.abs().max().item())
