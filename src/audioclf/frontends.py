"""Front-ends: waveform segments to log-mel or MFCC(+delta, delta-delta) features.

Both equal librosa (``power_to_db(melspectrogram(...))``, ``feature.mfcc`` and
``feature.delta``) to float32 rounding, but run batched in torch, on the GPU when
there is one. The mel projection uses the filterbank's sparsity: every FFT bin lies
under at most two triangles. On the CPU one compiled kernel (:mod:`audioclf.mel_kernels`)
calls MKL's FFT on the overlapping frames where they lie (no windowed copy, 4x the
waveform), a tile of 32 frames at a time so that their spectrum stays in the core's
cache, applies the Hann window to the spectrum, adds each bin's power to its bands and
applies the ``top_db`` floor, leaving one logarithm: ~0.39 ms per 4-s segment, FFT
included (see :mod:`audioclf.mkl`; where torch's build does not export MKL's FFT,
``torch.fft.rfft`` transforms all frames first). On the GPU bands are projected in
blocks of neighbours against the bins they span, ~8x fewer multiply-adds than a dense
product.
"""
from __future__ import annotations

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import torch
from torch import nn

from audioclf import mkl
from audioclf.config import FeaturesConfig
from audioclf.mel_kernels import AMIN, MEL_TILE, bands_per_bin, last_nonzero, mel_power, mel_power_mkl
from audioclf.mkl import use_vector_code

# before any FFT: MKL's vector code on AMD CPUs (0.16 ms against 0.29 ms per segment's rFFT)
MKL_STATUS = use_vector_code()

BANDS_PER_BLOCK = 16  # GPU path: bands projected together (fastest of 4 .. 32 for 128 mels)


def highpass_gain(freqs: np.ndarray, cutoff: float, order: int) -> np.ndarray:
    """Power gain |H(f)|^2 of a Butterworth high-pass of ``order`` at ``cutoff`` Hz.

    >>> highpass_gain(np.array([0.0, 500.0, 5000.0]), 500.0, 2).round(4).tolist()
    [0.0, 0.5, 0.9999]
    """
    ratio = np.divide(cutoff, freqs, out=np.full_like(freqs, np.inf, dtype=float), where=freqs > 0)
    return 1.0 / (1.0 + ratio ** (2 * order))


def mel_filterbank(cfg: FeaturesConfig) -> np.ndarray:
    """librosa's Slaney mel filterbank (n_mels, n_fft // 2 + 1), times the optional high-pass."""
    fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min, fmax=cfg.f_max)
    if cfg.highpass_order:
        freqs = librosa.fft_frequencies(sr=cfg.sample_rate, n_fft=cfg.n_fft)
        fb = fb * highpass_gain(freqs, cfg.f_min, cfg.highpass_order)[None].astype(np.float32)
    return fb


class LogMel(nn.Module):
    """Waveform to log-mel in dB, equal to ``librosa.power_to_db(melspectrogram(...))``.

    Periodic Hann window, centred zero-padded STFT (librosa's defaults), Slaney mel
    filterbank (times ``|H(f)|^2`` of a Butterworth high-pass at ``f_min`` when
    ``highpass_order > 0``), ``ref=1.0``, ``amin=1e-10`` and a per-item ``top_db`` floor.

    Input (B, N) float waveform at ``cfg.sample_rate``; output (B, n_mels, 1 + N // hop).
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.n_fft, self.hop_length, self.top_db, self.n_mels = cfg.n_fft, cfg.hop_length, cfg.top_db, cfg.n_mels
        self.register_buffer("window", torch.hann_window(cfg.n_fft))    # periodic, like scipy's 'hann'
        fb = mel_filterbank(cfg)                                          # (n_mels, F)
        # rows interleaved like view_as_real's (re, im) pairs: |X|^2 projection = squares @ fb2
        fb2 = np.repeat(fb.T, 2, axis=0)                                  # (2F, n_mels)
        self.blocks: list[tuple[int, int, int, int]] = []
        for i, lo_band in enumerate(range(0, cfg.n_mels, BANDS_PER_BLOCK)):
            hi_band = min(lo_band + BANDS_PER_BLOCK, cfg.n_mels)
            bins = np.flatnonzero(fb[lo_band:hi_band].any(axis=0))
            lo, hi = (2 * bins[0], 2 * bins[-1] + 2) if len(bins) else (0, 0)
            self.blocks.append((lo_band, hi_band, lo, hi))
            self.register_buffer(f"fb{i}", torch.from_numpy(np.ascontiguousarray(fb2[lo:hi, lo_band:hi_band])))
        self.bands, self.weights = bands_per_bin(fb)                     # CPU path: (F, K) each

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop_length={self.hop_length}, n_mels={self.n_mels}, top_db={self.top_db}"

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.device.type == "cpu":
            return self._logmel_cpu(wave)                                                       # (B, n_mels, T)
        mel = self._mel_blocks(torch.fft.rfft(self._frames(wave) * self.window)).transpose(1, 2)
        db = torch.log10(mel.clamp_min_(AMIN)).mul_(10.0)
        floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db
        return torch.maximum(db, floor)                                                         # (B, n_mels, T)

    def _frames(self, wave: torch.Tensor) -> torch.Tensor:
        """The centred, zero-padded frames (B, T, n_fft) of ``wave`` (B, N), as a view of one padded copy."""
        pad = self.n_fft // 2
        return nn.functional.pad(wave, (pad, pad)).unfold(-1, self.n_fft, self.hop_length)

    def _logmel_cpu(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel (B, n_mels, T) of ``wave`` (B, N): the floor goes on the power, then one log.

        ``max(x, peak * 10^(-top_db / 10))`` in power is the ``top_db`` floor in dB.
        """
        mel = self._mel_cpu(wave, floor=10.0 ** (-self.top_db / 10.0))
        out = mel.numpy()
        np.log10(out, out=out)
        out *= 10.0
        return mel

    def _mel_cpu(self, wave: torch.Tensor, frames: torch.Tensor | None = None, floor: float = 0.0) -> torch.Tensor:
        """Mel power (B, n_mels, T) of the frames of ``wave`` (B, N), at least ``max(AMIN, floor * peak)``.

        The FFT reads the overlapping frames where they lie (no windowed copy, 4x the
        waveform); the compiled kernel applies the Hann window to the spectrum instead.
        With MKL's FFT interface at hand the kernel calls it a tile at a time, with
        descriptors committed once per thread (:func:`audioclf.mkl.real_fft`).
        Frames that lie wholly in trailing zeros (a short clip padded to its segment, or
        digital silence) have no power: they are not transformed, and get the floor.
        """
        n_frames = 1 + (wave.shape[-1] + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length
        mel = torch.empty(wave.shape[0], self.n_mels, n_frames)
        samples = wave.numpy()
        last = last_nonzero(samples)                             # -1: all zero
        with_signal = min(n_frames, max(1, (last + self.n_fft // 2) // self.hop_length + 1))
        even, floor = self.n_fft % 2 == 0, np.float32(floor)
        if not mkl.DFTI:
            frames = self._frames(wave) if frames is None else frames                           # (B, T, n_fft)
            spec = torch.fft.rfft(frames[:, :with_signal])                                       # (B, T', F)
            mel_power(torch.view_as_real(spec).numpy(), even, self.bands, self.weights, floor, mel.numpy())
            return mel
        with mkl.real_fft(self.n_fft, self.hop_length, MEL_TILE) as fft:
            rest = with_signal % MEL_TILE
            full, rest = fft.handle(MEL_TILE), fft.handle(rest) if rest else 0
            padded, spec = fft.scratch(samples.shape[1] + 2 * (self.n_fft // 2), self.n_fft // 2 + 1)
            status = mel_power_mkl(np.ascontiguousarray(samples), with_signal, self.hop_length, full, rest, padded,
                                    spec, even, self.bands, self.weights, floor, mel.numpy())
        if status:
            raise RuntimeError(f"MKL's FFT failed: {mkl.error_message(status)}")
        return mel

    def _mel_blocks(self, spec: torch.Tensor) -> torch.Tensor:
        """Mel power (B, T, n_mels) of a spectrum (B, T, F), by blocks of bands (for GPUs)."""
        power = torch.view_as_real(spec).flatten(-2).square_()                                 # (B, T, 2F)
        mel = power.new_zeros(*power.shape[:-1], self.n_mels)                                   # (B, T, n_mels)
        for i, (lo_band, hi_band, lo, hi) in enumerate(self.blocks):
            if hi > lo:
                mel[..., lo_band:hi_band] = power[..., lo:hi] @ getattr(self, f"fb{i}")
        return mel


def delta_matrix(n_frames: int, width: int, order: int) -> np.ndarray:
    """(T, T) matrix D with ``x @ D.T == librosa.feature.delta(x, width=width, order=order)``.

    librosa's delta is a Savitzky-Golay filter (``mode='interp'``), linear in ``x``, so
    filtering the identity gives its matrix, edges included.
    """
    eye = np.eye(n_frames)
    return scipy.signal.savgol_filter(eye, width, polyorder=order, deriv=order, axis=0, mode="interp")


class MFCC(nn.Module):
    """Waveform to MFCC with delta and delta-delta stacked as channels.

    Equal to ``librosa.feature.mfcc(S=log-mel dB)`` (DCT-II, orthonormal) and
    ``librosa.feature.delta(mfcc, width, order=1 and 2)``.

    Input (B, N) waveform with ``1 + N // hop == cfg.n_frames``; output (B, 3, n_mfcc, n_frames).
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.logmel = LogMel(cfg)
        dct = scipy.fft.dct(np.eye(cfg.n_mels), type=2, norm="ortho", axis=0)[: cfg.n_mfcc]   # (n_mfcc, n_mels)
        self.register_buffer("dct", torch.from_numpy(dct.astype(np.float32)))
        deltas = [delta_matrix(cfg.n_frames, cfg.delta_width, k).T for k in (1, 2)]
        self.register_buffer("deltas_t", torch.from_numpy(np.stack(deltas).astype(np.float32)))  # (2, T, T)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        coeffs = self.dct @ self.logmel(wave)                      # (B, n_mfcc, T)
        if coeffs.shape[-1] != self.deltas_t.shape[-1]:
            raise ValueError(f"MFCC was built for {self.deltas_t.shape[-1]} frames per segment, got {coeffs.shape[-1]}")
        deltas = coeffs.unsqueeze(1) @ self.deltas_t               # (B, 2, n_mfcc, T)
        return torch.cat([coeffs.unsqueeze(1), deltas], dim=1)     # (B, 3, n_mfcc, T)


class FrontEnd(nn.Module):
    """The configured front-end with a channel axis: (B, segment_samples) -> (B, C, F, T).

    ``shape`` is (C, F, T): (1, n_mels, T) for ``logmel``, (3, n_mfcc, T) for ``mfcc``.
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.shape, self.segment_samples = cfg.shape, cfg.segment_samples
        self.transform = MFCC(cfg) if cfg.kind == "mfcc" else LogMel(cfg)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        out = self.transform(wave)
        return out if out.dim() == 4 else out.unsqueeze(1)         # (B, C, F, T)
