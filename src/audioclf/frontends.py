"""Front-ends: waveform segments to log-mel or MFCC(+delta, delta-delta) features.

Both equal librosa (``power_to_db(melspectrogram(...))``, ``feature.mfcc`` and
``feature.delta``) to float32 rounding, but run batched in torch, on the GPU when
there is one. The mel projection uses the filterbank's sparsity: every FFT bin lies
under at most two triangles. On the CPU one compiled kernel calls MKL's FFT on the
overlapping frames where they lie (no windowed copy, 4x the waveform), a tile of 32
frames at a time so that their spectrum stays in the core's cache, applies the Hann
window to the spectrum, adds each bin's power to its bands (~2 multiply-adds per
bin) and applies the ``top_db`` floor, leaving one logarithm: ~0.39 ms per 4-s
segment, FFT included (see :mod:`audioclf.mkl`; where torch's build does not export
MKL's FFT, ``torch.fft.rfft`` transforms all frames first). On the GPU bands are projected in blocks of neighbours against the
bins they span, ~8x fewer multiply-adds than a dense product.
"""
from __future__ import annotations

import librosa
import numba
import numpy as np
import scipy.fft
import scipy.signal
import torch
from torch import nn

from audioclf.config import FeaturesConfig
from audioclf import mkl
from audioclf.mkl import dfti_forward, use_vector_code

# before any FFT: MKL's vector code on AMD CPUs (0.16 ms against 0.29 ms per segment's rFFT)
MKL_STATUS = use_vector_code()

BANDS_PER_BLOCK = 16  # GPU path: bands projected together (fastest of 4 .. 32 for 128 mels)
MEL_TILE = 32         # CPU path: frames projected together (fastest of 8 .. 32, cache-cold)
TRANSPOSE_BLOCK = 16  # CPU path: bins per block of the tile's transpose (8 .. 32 ran alike)
AMIN = 1e-10          # power floor before the logarithm (librosa's power_to_db amin)


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
        pad = self.n_fft // 2
        frames = nn.functional.pad(wave, (pad, pad)).unfold(-1, self.n_fft, self.hop_length)  # (B, T, n_fft)
        if wave.device.type == "cpu":
            return self._logmel_cpu(wave, frames)                                               # (B, n_mels, T)
        mel = self._mel_blocks(torch.fft.rfft(frames * self.window)).transpose(1, 2)
        db = torch.log10(mel.clamp_min_(AMIN)).mul_(10.0)
        floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db
        return torch.maximum(db, floor)                                                         # (B, n_mels, T)

    def _logmel_cpu(self, wave: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Log-mel (B, n_mels, T) of frames (B, T, n_fft) of ``wave``: the floor goes on the power, then one log.

        ``max(x, peak * 10^(-top_db / 10))`` in power is the ``top_db`` floor in dB.
        """
        mel = self._mel_cpu(wave, frames, 10.0 ** (-self.top_db / 10.0))
        out = mel.numpy()
        np.log10(out, out=out)
        out *= 10.0
        return mel

    def _mel_cpu(self, wave: torch.Tensor, frames: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
        """Mel power (B, n_mels, T) of frames (B, T, n_fft) of ``wave``, at least ``max(AMIN, floor * peak)``.

        The FFT reads the overlapping frames where they lie (no windowed copy, 4x the
        waveform); the compiled kernel applies the Hann window to the spectrum instead.
        With MKL's FFT interface at hand the kernel calls it a tile at a time, with
        descriptors committed once per thread (:func:`audioclf.mkl.real_fft`).
        Frames that lie wholly in trailing zeros (a short clip padded to its segment, or
        digital silence) have no power: they are not transformed, and get the floor.
        """
        mel = torch.empty(frames.shape[0], self.n_mels, frames.shape[1])
        samples = wave.numpy()
        last = _last_nonzero(samples)                             # -1: all zero
        with_signal = min(frames.shape[1], max(1, (last + self.n_fft // 2) // self.hop_length + 1))
        even, floor = self.n_fft % 2 == 0, np.float32(floor)
        if not mkl.DFTI:
            spec = torch.fft.rfft(frames[:, :with_signal])                                       # (B, T', F)
            _mel_power(torch.view_as_real(spec).numpy(), even, self.bands, self.weights, floor, mel.numpy())
            return mel
        with mkl.real_fft(self.n_fft, self.hop_length, MEL_TILE) as fft:
            rest = with_signal % MEL_TILE
            full, rest = fft.handle(MEL_TILE), fft.handle(rest) if rest else 0
            padded, spec = fft.scratch(samples.shape[1] + 2 * (self.n_fft // 2), self.n_fft // 2 + 1)
            status = _mel_power_mkl(np.ascontiguousarray(samples), with_signal, self.hop_length, full, rest, padded,
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


def bands_per_bin(fb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The filterbank (n_mels, F) as, per FFT bin, the bands it feeds and their weights.

    Returns:
        ``bands`` int64 (F, K) and ``weights`` float32 (F, K), K = the most bands any
        bin feeds (2 for triangular filters); unused slots have band -1 and weight 0.

    >>> bands, weights = bands_per_bin(np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]]))
    >>> bands.tolist(), weights.tolist()
    ([[0, -1], [0, 1], [1, -1]], [[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    """
    bins, mels = np.nonzero(fb.T)                           # by bin, then band: each bin's bands in order
    counts = np.bincount(bins, minlength=fb.shape[1])
    slot = np.arange(len(bins)) - np.repeat(np.cumsum(counts) - counts, counts)   # position among its bin's bands
    bands = np.full((fb.shape[1], max(1, counts.max(initial=0))), -1, dtype=np.int64)
    weights = np.zeros(bands.shape, dtype=np.float32)
    bands[bins, slot], weights[bins, slot] = mels, fb[mels, bins]
    return bands, weights


@numba.njit(cache=True, nogil=True, fastmath=True)
def _mel_power(spec: np.ndarray, even: bool, bands: np.ndarray, weights: np.ndarray, floor: np.float32,
               out: np.ndarray) -> None:
    """Write the mel power (B, n_mels, T) of Hann-windowed frames, given the spectrum of the bare frames.

    ``spec`` is float32 (B, T', F, 2), real and imaginary parts of the rFFT of the
    first T' <= T frames without a window (the others are all zeros); frames go in
    tiles of ``MEL_TILE`` through :func:`_tile_mel`. Last, each item's values are
    raised to at least ``max(AMIN, floor * its peak)``.
    """
    row, tile, power, acc = _scratch(spec.shape[2], out.shape[1])
    for b in range(spec.shape[0]):
        for t0 in range(0, spec.shape[1], MEL_TILE):
            n = min(MEL_TILE, spec.shape[1] - t0)
            _tile_mel(spec[b, t0:t0 + n], even, bands, weights, row, tile, power, acc, out[b, :, t0:t0 + n])
        _finish(out[b], spec.shape[1], floor)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _mel_power_mkl(wave: np.ndarray, n_frames: int, hop: int, full: int, rest: int, padded: np.ndarray,
                   spec: np.ndarray, even: bool, bands: np.ndarray, weights: np.ndarray, floor: np.float32,
                   out: np.ndarray) -> int:
    """:func:`_mel_power` of the first ``n_frames`` frames of ``wave`` (B, N), transformed here by MKL.

    Each item is copied into the middle of ``padded`` (N + n_fft, zeros at both ends:
    the centred frames), and its frames are transformed a tile at a time into
    ``spec`` (MEL_TILE, F, 2), which stays in the core's cache for :func:`_tile_mel`.
    ``full`` and ``rest`` are MKL descriptors for ``MEL_TILE`` frames and for
    ``n_frames % MEL_TILE`` of them. Returns 0, or MKL's error status.
    """
    row, tile, power, acc = _scratch(spec.shape[1], out.shape[1])
    start = (padded.shape[0] - wave.shape[1]) // 2
    for b in range(wave.shape[0]):
        padded[start:start + wave.shape[1]] = wave[b]
        for t0 in range(0, n_frames, MEL_TILE):
            n = min(MEL_TILE, n_frames - t0)
            status = dfti_forward(full if n == MEL_TILE else rest, padded.ctypes.data + 4 * t0 * hop, spec.ctypes.data)
            if status:
                return status
            _tile_mel(spec[:n], even, bands, weights, row, tile, power, acc, out[b, :, t0:t0 + n])
        _finish(out[b], n_frames, floor)
    return 0


@numba.njit(cache=True, nogil=True)
def _scratch(n_bins: int, n_mels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Work arrays of :func:`_tile_mel`: one windowed frame, a tile's power frame- and bin-major, its mel sums."""
    padded = n_bins + TRANSPOSE_BLOCK                                     # room for the last, partial block
    return (np.zeros(2 * n_bins, dtype=np.float32), np.zeros((MEL_TILE, padded), dtype=np.float32),
            np.empty((padded, MEL_TILE), dtype=np.float32), np.empty((n_mels, MEL_TILE), dtype=np.float32))


@numba.njit(cache=True, nogil=True, fastmath=True)
def _tile_mel(spec: np.ndarray, even: bool, bands: np.ndarray, weights: np.ndarray, row: np.ndarray,
              tile: np.ndarray, power: np.ndarray, acc: np.ndarray, out: np.ndarray) -> None:
    """Mel power (n_mels, n) of up to ``MEL_TILE`` Hann-windowed frames from their bare spectrum (n, F, 2).

    The periodic Hann window (0.5 - 0.5 cos(2 pi n / N)) is three complex
    exponentials, so the windowed spectrum is ``0.5 X[k] - 0.25 (X[k-1] + X[k+1])``,
    with ``X[-1] = conj(X[1])`` and, past the last bin, ``X[F] = conj(X[F-2])`` for an
    ``even`` FFT length, ``conj(X[F-1])`` for an odd one (the input is real).

    Each frame is windowed as interleaved floats (a run that vectorises, unlike
    complex neighbours) and its power stored frame-major; the tile is then transposed
    in blocks of ``TRANSPOSE_BLOCK`` bins to bin-major (0.29 ms per 4-s segment
    against 0.37 ms writing it bin-major frame by frame), and each bin's power is
    added to its bands in runs over the tile's frames, which vectorise.
    """
    n, n_bins = spec.shape[0], spec.shape[1]
    m, last = 2 * n_bins, 2 * n_bins - 2                  # floats per frame; the last bin's real part
    for t in range(n):
        x = spec[t].reshape(m)
        for j in range(2, last):
            row[j] = 0.5 * x[j] - 0.25 * (x[j - 2] + x[j + 2])
        row[0], row[1] = 0.5 * (x[0] - x[2]), 0.0         # X[0] real, X[-1] = conj(X[1])
        if even:                                          # X[F] = conj(X[F-2]): imaginary parts cancel
            row[last], row[last + 1] = 0.5 * (x[last] - x[last - 2]), 0.0
        else:                                             # X[F] = conj(X[F-1])
            row[last] = 0.25 * x[last] - 0.25 * x[last - 2]
            row[last + 1] = 0.75 * x[last + 1] - 0.25 * x[last - 1]
        for k in range(n_bins):
            tile[t, k] = row[2 * k] * row[2 * k] + row[2 * k + 1] * row[2 * k + 1]
    for k0 in range(0, n_bins, TRANSPOSE_BLOCK):
        for t in range(n):
            for k in range(k0, k0 + TRANSPOSE_BLOCK):
                power[k, t] = tile[t, k]
    acc[:, :n] = 0.0
    for k in range(n_bins):
        for j in range(bands.shape[1]):
            band = bands[k, j]
            if band >= 0:
                w = weights[k, j]
                for t in range(n):
                    acc[band, t] += w * power[k, t]
    out[:, :] = acc[:, :n]


@numba.njit(cache=True, nogil=True)
def _finish(out: np.ndarray, done: int, floor: np.float32) -> None:
    """Zero the frames of ``out`` (n_mels, T) from ``done`` on (no signal there), then raise all to the floor."""
    out[:, done:] = 0.0
    lowest = max(AMIN, floor * out.max())
    for band in range(out.shape[0]):
        for t in range(out.shape[1]):
            out[band, t] = max(out[band, t], lowest)


@numba.njit(cache=True, nogil=True)
def _last_nonzero(wave: np.ndarray) -> int:
    """The largest index of a nonzero sample in any row of ``wave`` (B, N), or -1; scans from the end."""
    last = -1
    for b in range(wave.shape[0]):
        for i in range(wave.shape[1] - 1, last, -1):
            if wave[b, i] != 0.0:
                last = i
                break
    return last


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
