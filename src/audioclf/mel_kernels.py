"""The CPU front-end's compiled kernels: Hann-windowed power spectrum to mel power, with the ``top_db`` floor.

Both kernels take a segment's bare spectrum a tile of ``MEL_TILE`` frames at a time:
:func:`mel_power` from ``torch.fft.rfft`` of all its frames, :func:`mel_power_mkl`
from MKL's FFT called here on each tile, so the tile's spectrum stays in the core's
cache (see :mod:`audioclf.mkl`). Every FFT bin lies under at most two mel triangles,
so each bin's power is added to its bands (~2 multiply-adds per bin) instead of a
dense product.
"""
from __future__ import annotations

import numba
import numpy as np

from audioclf.mkl import dfti_forward

MEL_TILE = 32         # frames projected together (fastest of 8 .. 32, cache-cold)
TRANSPOSE_BLOCK = 16  # bins per block of the tile's transpose (8 .. 32 ran alike)
AMIN = 1e-10          # power floor before the logarithm (librosa's power_to_db amin)


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
def mel_power(spec: np.ndarray, even: bool, bands: np.ndarray, weights: np.ndarray, floor: np.float32,
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
def mel_power_mkl(wave: np.ndarray, n_frames: int, hop: int, full: int, rest: int, padded: np.ndarray,
                  spec: np.ndarray, even: bool, bands: np.ndarray, weights: np.ndarray, floor: np.float32,
                  out: np.ndarray) -> int:
    """:func:`mel_power` of the first ``n_frames`` frames of ``wave`` (B, N), transformed here by MKL.

    Each item is copied into the middle of ``padded`` (N + 2 (n_fft // 2), zeros at both ends:
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
    """Work arrays of :func:`_tile_mel`: one windowed frame, a tile's power frame- and bin-major, its mel sums.

    Left unset: every value read is written first (the bins the last transpose block
    adds past ``n_bins`` are moved but never added to a band).
    """
    padded = n_bins + TRANSPOSE_BLOCK                                     # room for the last, partial block
    return (np.empty(2 * n_bins, dtype=np.float32), np.empty((MEL_TILE, padded), dtype=np.float32),
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
def last_nonzero(wave: np.ndarray) -> int:
    """The largest index of a nonzero sample in any row of ``wave`` (B, N), or -1; scans from the end."""
    last = -1
    for b in range(wave.shape[0]):
        for i in range(wave.shape[1] - 1, last, -1):
            if wave[b, i] != 0.0:
                last = i
                break
    return last
