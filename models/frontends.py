"""Audio front-ends as torch modules that export cleanly to ONNX.

Both front-ends compute the DFT as a strided ``Conv1d`` with fixed kernels (no STFT op), so the exported graph only
uses Conv / Pad / MatMul / elementwise ops that every ONNX Runtime provider runs.

* :class:`LogMelFrontend` — HTS-AT (torchlibrosa): periodic Hann, centred frames with reflect padding, power
  spectrogram, Slaney mel filterbank, ``10*log10(max(x, amin))``.
* :class:`KaldiFbankFrontend` — AST (``torchaudio.compliance.kaldi.fbank`` as the official recipe calls it):
  ``snip_edges`` framing, per-frame DC removal, pre-emphasis, symmetric Hann, 512-point DFT, power, Kaldi mel
  filterbank, ``log(max(x, eps))``, pad/crop to ``target_length`` frames, AudioSet normalisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "KALDI_LOG_FLOOR",
    "KaldiFbankFrontend",
    "LogMelFrontend",
    "hz_to_mel_slaney",
    "kaldi_fbank_kernels",
    "kaldi_mel_banks",
    "mel_to_hz_slaney",
    "slaney_mel_filterbank",
    "stft_kernels",
]

KALDI_LOG_FLOOR = 1.1920928955078125e-07  # torch.finfo(torch.float32).eps, Kaldi's log floor


# --------------------------------------------------------------------------------------------------------------------
# Slaney mel filterbank (librosa.filters.mel defaults: htk=False, norm="slaney"), implemented in numpy
# --------------------------------------------------------------------------------------------------------------------

_SLANEY_F_SP = 200.0 / 3.0  # Hz per mel below 1 kHz
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel_slaney(freqs: np.ndarray | float) -> np.ndarray:
    """Slaney (Auditory Toolbox) mel scale: linear below 1 kHz, logarithmic above."""
    freqs = np.asanyarray(freqs, dtype=np.float64)
    mels = freqs / _SLANEY_F_SP
    log_region = freqs >= _SLANEY_MIN_LOG_HZ
    safe = np.where(log_region, freqs, _SLANEY_MIN_LOG_HZ)
    return np.where(log_region, _SLANEY_MIN_LOG_MEL + np.log(safe / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP, mels)


def mel_to_hz_slaney(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel_slaney`."""
    mels = np.asanyarray(mels, dtype=np.float64)
    freqs = _SLANEY_F_SP * mels
    log_region = mels >= _SLANEY_MIN_LOG_MEL
    return np.where(log_region, _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (mels - _SLANEY_MIN_LOG_MEL)), freqs)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, shape ``(n_fft // 2 + 1, n_mels)``, float32.

    Matches ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax).T`` (the ``melW`` stored in HTS-AT checkpoints),
    including librosa's float32 rounding of the triangles before the area normalisation.
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel filterbank needs 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}")
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_edges = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2))
    widths = np.diff(mel_edges)
    ramps = mel_edges[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float32)
    for i in range(n_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(rising, falling))
    area_norm = 2.0 / (mel_edges[2 : n_mels + 2] - mel_edges[:n_mels])
    weights *= area_norm[:, None]
    return np.ascontiguousarray(weights.T)


def stft_kernels(n_fft: int, win_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary DFT kernels with a periodic Hann window, each ``(n_fft // 2 + 1, n_fft)`` float32.

    ``real[k, n] = cos(2πkn/N)·w[n]`` and ``imag[k, n] = -sin(2πkn/N)·w[n]``, evaluated as powers of the complex root
    of unity in float64 like torchlibrosa, so the float32 values equal the kernels stored in HTS-AT checkpoints.
    """
    win_length = n_fft if win_length is None else win_length
    n = np.arange(win_length)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)  # periodic Hann
    pad = (n_fft - win_length) // 2
    window = np.pad(window, (pad, n_fft - win_length - pad))
    k = np.arange(n_fft // 2 + 1)
    omega = np.exp(-2j * np.pi / n_fft)
    basis = np.power(omega, k[:, None] * np.arange(n_fft)[None, :]) * window[None, :]
    return basis.real.astype(np.float32), basis.imag.astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Kaldi filterbank (torchaudio.compliance.kaldi semantics)
# --------------------------------------------------------------------------------------------------------------------


def _kaldi_mel(freqs: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asanyarray(freqs, dtype=np.float64) / 700.0)


def kaldi_mel_banks(
    n_mels: int, n_fft: int, sample_rate: int, low_freq: float = 20.0, high_freq: float = 0.0
) -> np.ndarray:
    """Kaldi's triangular mel filters built in mel space, shape ``(n_mels, n_fft // 2)`` (no Nyquist column).

    ``high_freq <= 0`` is an offset from Nyquist, as in Kaldi. Filters are unnormalised; a filter that falls between
    two FFT bins is all zero (filter 3 of the AST setup).
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"Kaldi mel banks need 0 <= low_freq < high_freq <= Nyquist, got {low_freq}, {high_freq}")
    mel_low, mel_high = _kaldi_mel(low_freq), _kaldi_mel(high_freq)
    delta = (mel_high - mel_low) / (n_mels + 1)
    index = np.arange(n_mels, dtype=np.float64)[:, None]
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    bin_mel = _kaldi_mel(sample_rate / n_fft * np.arange(n_fft // 2))[None, :]
    up = (bin_mel - left) / (center - left)
    down = (right - bin_mel) / (right - center)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def kaldi_fbank_kernels(
    frame_length: int, n_fft: int, preemphasis: float = 0.97, remove_dc_offset: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """DFT kernels that fold Kaldi's per-frame processing into one linear map, each ``(n_fft // 2 + 1, frame_length)``.

    A frame ``x`` (``frame_length`` samples) goes through DC removal ``x - mean(x)``, pre-emphasis
    ``y[i] = x[i] - a·x[i-1]`` with ``y[0] = x[0] - a·x[0]``, a symmetric Hann window, zero padding to ``n_fft`` and
    a real DFT. All of it is linear, so ``real @ x`` / ``imag @ x`` give the spectrum directly (float64 product,
    float32 result).
    """
    n = np.arange(frame_length)
    dc = np.eye(frame_length) - (np.full((frame_length, frame_length), 1.0 / frame_length) if remove_dc_offset else 0)
    emph = np.eye(frame_length) - preemphasis * np.eye(frame_length, k=-1)
    emph[0, 0] = 1.0 - preemphasis
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (frame_length - 1))  # symmetric Hann ("hanning")
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = 2.0 * np.pi * ((k * n[None, :]) % n_fft) / n_fft
    chain = window[:, None] * (emph @ dc)
    real = np.cos(angle) @ chain
    imag = -np.sin(angle) @ chain
    return real.astype(np.float32), imag.astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------------------------


class LogMelFrontend(nn.Module):
    """HTS-AT log-mel spectrogram: ``waveform [B, N] -> log-mel [B, frames, n_mels]`` in dB.

    ``frames = 1 + N // hop_length`` (centred frames, reflect padding of ``n_fft // 2`` samples on each side).
    """

    def __init__(
        self,
        sample_rate: int = 32000,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        fmin: float = 50.0,
        fmax: float = 14000.0,
        amin: float = 1e-10,
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length = sample_rate, n_fft, hop_length
        self.n_mels, self.fmin, self.fmax, self.amin = n_mels, float(fmin), float(fmax), amin
        real, imag = stft_kernels(n_fft)
        self.register_buffer("dft_real", torch.from_numpy(real)[:, None, :], persistent=False)
        self.register_buffer("dft_imag", torch.from_numpy(imag)[:, None, :], persistent=False)
        mel = slaney_mel_filterbank(sample_rate, n_fft, n_mels, self.fmin, self.fmax)
        self.register_buffer("mel_basis", torch.from_numpy(mel), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` samples."""
        return 1 + num_samples // self.hop_length

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"LogMelFrontend expects a waveform [batch, samples], got shape {tuple(waveform.shape)}")
        if not torch.jit.is_tracing() and waveform.shape[-1] <= self.n_fft // 2:
            raise ValueError(f"waveform too short for reflect padding: {waveform.shape[-1]} <= {self.n_fft // 2}")
        x = F.pad(waveform.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real = F.conv1d(x, self.dft_real, stride=self.hop_length)
        imag = F.conv1d(x, self.dft_imag, stride=self.hop_length)
        power = (real**2 + imag**2).transpose(1, 2)  # [B, frames, bins]
        mel = torch.matmul(power, self.mel_basis)
        return 10.0 * torch.log10(torch.clamp(mel, min=self.amin))

    def config(self) -> dict[str, Any]:
        """JSON-able description of this front-end."""
        return {
            "type": "logmel",
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "win_length": self.n_fft,
            "hop_length": self.hop_length,
            "window": "hann_periodic",
            "center": True,
            "pad_mode": "reflect",
            "power": 2.0,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "mel_scale": "slaney",
            "mel_norm": "slaney",
            "log": "10*log10(max(x, amin))",
            "amin": self.amin,
            "output_layout": "[batch, frames, n_mels]",
        }


class KaldiFbankFrontend(nn.Module):
    """AST Kaldi fbank: ``waveform [B, N] -> normalised fbank [B, target_length, n_mels]``.

    ``frames = 1 + (N - frame_length) // frame_shift`` (``snip_edges``); fewer frames are zero-padded at the end
    (before normalisation, so padded frames read ``mean / (2·std)`` afterwards), more are cropped to the first
    ``target_length``. Normalisation is ``(x - mean) / (2·std)`` with the AudioSet statistics by default.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        frame_length: int = 400,
        frame_shift: int = 160,
        n_fft: int = 512,
        n_mels: int = 128,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        preemphasis: float = 0.97,
        target_length: int = 1024,
        mean: float = -4.2677393,
        std: float = 4.5689974,
    ) -> None:
        super().__init__()
        if n_fft < frame_length:
            raise ValueError(f"n_fft ({n_fft}) must be >= frame_length ({frame_length})")
        self.sample_rate, self.frame_length, self.frame_shift = sample_rate, frame_length, frame_shift
        self.n_fft = n_fft
        self.n_mels, self.low_freq, self.high_freq = n_mels, float(low_freq), float(high_freq)
        self.preemphasis, self.target_length, self.mean, self.std = preemphasis, target_length, mean, std
        real, imag = kaldi_fbank_kernels(frame_length, n_fft, preemphasis)
        self.register_buffer("dft_real", torch.from_numpy(real)[:, None, :], persistent=False)
        self.register_buffer("dft_imag", torch.from_numpy(imag)[:, None, :], persistent=False)
        banks = kaldi_mel_banks(n_mels, n_fft, sample_rate, self.low_freq, self.high_freq)
        banks = np.concatenate([banks, np.zeros((n_mels, 1), np.float32)], axis=1)  # Nyquist bin gets no weight
        self.register_buffer("mel_basis", torch.from_numpy(np.ascontiguousarray(banks.T)), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Kaldi frames (``snip_edges``) in ``num_samples`` samples, before padding/cropping."""
        return 0 if num_samples < self.frame_length else 1 + (num_samples - self.frame_length) // self.frame_shift

    def fbank(self, waveform: torch.Tensor) -> torch.Tensor:
        """Un-normalised, un-padded log mel filterbank ``[B, frames, n_mels]`` (``torchaudio`` kaldi.fbank values)."""
        if waveform.dim() != 2:
            raise ValueError(f"KaldiFbankFrontend expects [batch, samples], got shape {tuple(waveform.shape)}")
        if not torch.jit.is_tracing() and waveform.shape[-1] < self.frame_length:
            raise ValueError(f"waveform shorter than one frame: {waveform.shape[-1]} < {self.frame_length} samples")
        x = waveform.unsqueeze(1)
        real = F.conv1d(x, self.dft_real, stride=self.frame_shift)
        imag = F.conv1d(x, self.dft_imag, stride=self.frame_shift)
        power = (real**2 + imag**2).transpose(1, 2)
        mel = torch.matmul(power, self.mel_basis)
        return torch.log(torch.clamp(mel, min=KALDI_LOG_FLOOR))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.fbank(waveform)
        frames = x.shape[1]
        if frames < self.target_length:
            x = F.pad(x, (0, 0, 0, self.target_length - frames))
        elif frames > self.target_length:
            x = x[:, : self.target_length]
        return (x - self.mean) / (2.0 * self.std)

    def config(self) -> dict[str, Any]:
        """JSON-able description of this front-end."""
        return {
            "type": "kaldi_fbank",
            "sample_rate": self.sample_rate,
            "frame_length": self.frame_length,
            "frame_shift": self.frame_shift,
            "snip_edges": True,
            "remove_dc_offset": True,
            "preemphasis": self.preemphasis,
            "window": "hann_symmetric",
            "n_fft": self.n_fft,
            "power": 2.0,
            "n_mels": self.n_mels,
            "low_freq": self.low_freq,
            "high_freq": self.high_freq,
            "mel_scale": "kaldi",
            "log": "log(max(x, eps))",
            "log_floor": KALDI_LOG_FLOOR,
            "target_length": self.target_length,
            "pad": "zeros at the end before normalisation; longer inputs keep the first target_length frames",
            "normalisation": "(x - mean) / (2 * std)",
            "mean": self.mean,
            "std": self.std,
            "output_layout": "[batch, target_length, n_mels]",
        }
