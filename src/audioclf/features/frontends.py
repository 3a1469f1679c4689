"""Front-ends: waveform segments to features, one class per ``features.kind`` (:class:`FrontEnd`).

The log-mel and MFCC(+delta, delta-delta) equal librosa (``power_to_db(melspectrogram(...))``,
``feature.mfcc`` and ``feature.delta``) to float32 rounding, and run batched in plain torch,
the same code on the CPU and on a GPU; ``imagenet`` is the log-mel as an image. The
pretrained models' own front-ends live beside them: AST's Kaldi filterbanks
(:mod:`~audioclf.features.fbank`) and BirdNET's embeddings (:mod:`~audioclf.features.birdnet`);
openSMILE's functionals are in :mod:`~audioclf.features.opensmile`.
"""

from __future__ import annotations

from collections.abc import Callable

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import torch
from torch import nn

from audioclf.config.features import FeaturesConfig
from audioclf.features.birdnet import BirdNetEmbedding
from audioclf.features.encoder import EncoderEmbedding
from audioclf.features.fbank import KaldiFbank
from audioclf.features.opensmile import Functionals

AMIN = 1e-10  # power floor before the logarithm (librosa's power_to_db amin)
BANDS_PER_BLOCK = 16  # bands projected together (fastest of 8 .. 32 for 128 mels, CPU and GPU)
# frames of a batch transformed together on the CPU, their arrays in the core's cache (96 .. 192 ran
# alike alone, 128 best with 16 segments a call; a 4-s segment's 173 at once ran up to 2x slower
# while other threads used the memory)
CPU_TILE_FRAMES = 128


def highpass_gain(freqs: np.ndarray, cutoff: float, order: int) -> np.ndarray:
    """Power gain |H(f)|^2 of a Butterworth high-pass of ``order`` at ``cutoff`` Hz.

    >>> highpass_gain(np.array([0.0, 500.0, 5000.0]), 500.0, 2).round(4).tolist()
    [0.0, 0.5, 0.9999]
    """
    ratio = np.divide(cutoff, freqs, out=np.full_like(freqs, np.inf, dtype=float), where=freqs > 0)
    return 1.0 / (1.0 + ratio ** (2 * order))


def mel_filterbank(cfg: FeaturesConfig) -> np.ndarray:
    """librosa's Slaney mel filterbank (n_mels, n_fft // 2 + 1), times the optional high-pass."""
    fb = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min, fmax=cfg.f_max
    )
    if cfg.highpass_order:
        freqs = librosa.fft_frequencies(sr=cfg.sample_rate, n_fft=cfg.n_fft)
        fb = fb * highpass_gain(freqs, cfg.f_min, cfg.highpass_order)[None].astype(np.float32)
    return fb


class LogMel(nn.Module):
    """Waveform to log-mel in dB, equal to ``librosa.power_to_db(melspectrogram(...))``.

    Periodic Hann window, centred zero-padded STFT (librosa's defaults), Slaney mel
    filterbank (times ``|H(f)|^2`` of a Butterworth high-pass at ``f_min`` when
    ``highpass_order > 0``), ``ref=1.0``, ``amin=1e-10`` and a per-item ``top_db`` floor.
    One torch path on every device: frames, window, ``torch.fft.rfft``, the mel
    projection by blocks of neighbouring bands against the bins they span (every bin
    lies under at most two triangles: ~8x fewer multiply-adds than a dense product),
    the logarithm and the floor; on the CPU a tile of frames at a time, so that each
    tile's arrays stay in the core's cache. Frames that lie wholly in the batch's trailing zeros
    (a short clip padded to its segment) have no power: they are not transformed and
    get the floor, exactly what transforming them would give.

    Input (B, N) float waveform at ``cfg.sample_rate``; output (B, n_mels, 1 + N // hop).
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.n_fft, self.hop_length, self.top_db, self.n_mels = (
            cfg.n_fft,
            cfg.hop_length,
            cfg.top_db,
            cfg.n_mels,
        )
        self.register_buffer(
            "window", torch.hann_window(cfg.n_fft)
        )  # periodic, like scipy's 'hann'
        fb = mel_filterbank(cfg)  # (n_mels, F)
        # rows interleaved like view_as_real's (re, im) pairs: |X|^2 projection = squares @ fb2
        fb2 = np.repeat(fb.T, 2, axis=0)  # (2F, n_mels)
        self.blocks: list[tuple[int, int, int, int]] = []
        for i, lo_band in enumerate(range(0, cfg.n_mels, BANDS_PER_BLOCK)):
            hi_band = min(lo_band + BANDS_PER_BLOCK, cfg.n_mels)
            bins = np.flatnonzero(fb[lo_band:hi_band].any(axis=0))
            lo, hi = (2 * bins[0], 2 * bins[-1] + 2) if len(bins) else (0, 0)
            self.blocks.append((lo_band, hi_band, lo, hi))
            self.register_buffer(
                f"fb{i}", torch.from_numpy(np.ascontiguousarray(fb2[lo:hi, lo_band:hi_band]))
            )
        self._weights = [self._buffers[f"fb{i}"] for i in range(len(self.blocks))]

    def _apply(self, fn, *args, **kwargs):
        """Keep the per-block weights, read in the hot loop without ``nn.Module`` lookups, in step with
        the buffers when the module moves (``.to``, ``.cuda``)."""
        out = super()._apply(fn, *args, **kwargs)
        self._weights = [self._buffers[f"fb{i}"] for i in range(len(self.blocks))]
        return out

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop_length={self.hop_length}, n_mels={self.n_mels}, top_db={self.top_db}"

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        batch, pad, hop = wave.shape[0], self.n_fft // 2, self.hop_length
        n_frames = 1 + wave.shape[-1] // hop
        used = min(n_frames, (last_nonzero(wave) + pad) // hop + 1)  # frames with signal
        # on the CPU a tile of frames keeps its spectrum and powers in the core's cache (a batch of
        # files' frames at once outgrew it and ran up to 2x slower); a GPU takes them whole
        tile = max(1, min(used, n_frames if wave.is_cuda else CPU_TILE_FRAMES // batch))
        n_tiles = -(-used // tile)
        held = max(n_tiles, -(-n_frames // tile))  # tiles' worth of frames the output holds
        # trailing zeros enough for whole tiles: the last one's extra frames see none of the signal
        right = pad + max(0, n_tiles * tile - n_frames) * hop
        frames = padded(wave, pad, right).unfold(-1, self.n_fft, hop)  # (B, T', n_fft)
        mel = wave.new_full((held, batch * tile, self.n_mels), AMIN)  # tile k: (B * tile, n_mels)
        windowed = wave.new_empty((batch, tile, self.n_fft))  # reused by every tile
        frame_rows = windowed.view(batch * tile, self.n_fft)  # the tile's frames, one per row
        project = self._projection(batch * tile, wave)
        for k in range(n_tiles):
            torch.mul(frames[:, k * tile : (k + 1) * tile], self.window, out=windowed)
            mel[k].copy_(project(torch.fft.rfft(frame_rows)))  # spectrum (B * tile, F) to mel power
        # one copy puts the tiles' rows in output order, bands before frames, so that the result is
        # contiguous: a transposed one cost the features stage a strided copy per file when stored
        mel = mel.view(held, batch, tile, self.n_mels).permute(1, 3, 0, 2)  # (B, n_mels, k, tile)
        mel = mel.reshape(batch, self.n_mels, held * tile)[..., :n_frames]  # (B, n_mels, T)
        db = mel.clamp_min_(AMIN).log10_().mul_(10.0)
        floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db
        return torch.maximum(db, floor)  # (B, n_mels, T), contiguous

    def _projection(self, rows: int, like: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """A call that gives the mel power (rows, n_mels) of a spectrum (rows, F), in one buffer.

        Each block of bands is one matrix product of the bins it spans into that buffer's columns
        for those bands, made once here: made per product, the product's own output and its
        copy into place cost more than the short products themselves (~9 against ~2 µs).
        """
        out = like.new_zeros((rows, self.n_mels))  # a band over no bin (none of librosa's) stays 0
        products = [
            (lo, hi, weights, out[:, lo_band:hi_band])
            for (lo_band, hi_band, lo, hi), weights in zip(self.blocks, self._weights, strict=True)
            if hi > lo
        ]

        def project(spec: torch.Tensor) -> torch.Tensor:
            # |X|^2 = re^2 + im^2: the squares, interleaved, summed by the weights' repeated rows
            power = torch.view_as_real(spec).view(rows, -1).square_()  # (rows, 2F)
            for lo, hi, weights, bands in products:
                torch.mm(power[:, lo:hi], weights, out=bands)
            return out

        return project


def padded(wave: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """``wave`` (B, N) with ``left`` and ``right`` zeros: ``nn.functional.pad`` without filling the
    whole array before copying the samples in (a pass over a batch's megabytes per call).

    >>> padded(torch.ones(1, 2), 1, 2).tolist()
    [[0.0, 1.0, 1.0, 0.0, 0.0]]
    """
    out = wave.new_empty((wave.shape[0], left + wave.shape[-1] + right))
    out[:, :left] = 0.0
    out[:, left + wave.shape[-1] :] = 0.0
    out[:, left : left + wave.shape[-1]] = wave
    return out


def last_nonzero(wave: torch.Tensor) -> int:
    """The last sample index (along N) at which any item of ``wave`` (B, N) is non-zero; -1 if none is.

    >>> last_nonzero(torch.tensor([[0.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]]))
    1
    """
    if bool(wave[:, -1].ne(0).any()):  # the common case, a segment without padding: no scan
        return wave.shape[-1] - 1
    nonzero = torch.nonzero(wave.ne(0).any(dim=0))
    return int(nonzero[-1]) if len(nonzero) else -1


def delta_matrix(n_frames: int, width: int, order: int) -> np.ndarray:
    """(T, T) matrix D with ``x @ D.T == librosa.feature.delta(x, width=width, order=order)``.

    librosa's delta is a Savitzky-Golay filter (``mode='interp'``), linear in ``x``, so
    filtering the identity gives its matrix, edges included.
    """
    eye = np.eye(n_frames)
    return scipy.signal.savgol_filter(
        eye, width, polyorder=order, deriv=order, axis=0, mode="interp"
    )


class MFCC(nn.Module):
    """Waveform to MFCC with delta and delta-delta stacked as channels.

    Equal to ``librosa.feature.mfcc(S=log-mel dB)`` (DCT-II, orthonormal) and
    ``librosa.feature.delta(mfcc, width, order=1 and 2)``.

    Input (B, N) waveform with ``1 + N // hop == cfg.n_frames``; output (B, 3, n_mfcc, n_frames).
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.logmel = LogMel(cfg)
        dct = scipy.fft.dct(np.eye(cfg.n_mels), type=2, norm="ortho", axis=0)[
            : cfg.n_mfcc
        ]  # (n_mfcc, n_mels)
        self.register_buffer("dct", torch.from_numpy(dct.astype(np.float32)))
        deltas = [delta_matrix(cfg.n_frames, cfg.delta_width, k).T for k in (1, 2)]
        self.register_buffer(
            "deltas_t", torch.from_numpy(np.stack(deltas).astype(np.float32))
        )  # (2, T, T)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        coeffs = self.dct @ self.logmel(wave)  # (B, n_mfcc, T)
        if coeffs.shape[-1] != self.deltas_t.shape[-1]:
            raise ValueError(
                f"MFCC was built for {self.deltas_t.shape[-1]} frames per segment, got {coeffs.shape[-1]}"
            )
        deltas = coeffs.unsqueeze(1) @ self.deltas_t  # (B, 2, n_mfcc, T)
        return torch.cat([coeffs.unsqueeze(1), deltas], dim=1)  # (B, 3, n_mfcc, T)


class ImageNetImage(nn.Module):
    """The log-mel as an ImageNet CNN was trained to see an image: in [0, 1], optionally square.

    The dB log-mel (floored at ``max - top_db`` per segment) is scaled to
    ``(dB - max) / top_db + 1`` and, with ``image_size``, resized (bilinear) to
    ``image_size`` x ``image_size`` (the 224 x 224 of the ESC-50 ImageNet work). ImageNet's
    mean and std are the checkpoint's input statistics, applied by training and inference
    (:func:`audioclf.models.pretrained.input_statistics`): they broadcast the one channel
    to the three colours.

    Input (B, N) waveform; output (B, 1, n_mels, T) or (B, 1, image_size, image_size).
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.logmel, self.top_db, self.size = LogMel(cfg), cfg.top_db, cfg.image_size

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        db = self.logmel(wave)  # (B, n_mels, T), within top_db of its maximum
        peak = db.amax(dim=(1, 2), keepdim=True)
        image = ((db - peak) / self.top_db + 1.0).unsqueeze(1)  # (B, 1, n_mels, T) in [0, 1]
        if self.size is not None:
            image = nn.functional.interpolate(
                image, size=(self.size, self.size), mode="bilinear", align_corners=False
            )  # (B, 1, S, S)
        return image


class Waveform(nn.Module):
    """The segment's samples as they are, for a model that runs its checkpoint's own feature
    extractor (``model: hf``): the store then holds audio at the extractor's sampling rate.

    Input (B, N) waveform; output (B, 1, N).
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave.unsqueeze(1)  # (B, 1, N)


TRANSFORMS: dict[str, type[nn.Module]] = {
    "logmel": LogMel,
    "mfcc": MFCC,
    "fbank": KaldiFbank,
    "imagenet": ImageNetImage,
    "birdnet": BirdNetEmbedding,
    "egemaps": Functionals,
    "compare": Functionals,
    "waveform": Waveform,
    "hf": EncoderEmbedding,
}


class FrontEnd(nn.Module):
    """The configured front-end with a channel axis: (B, segment_samples) -> (B, C, F, T).

    ``shape`` is (C, F, T) (:attr:`FeaturesConfig.shape`): (1, n_mels, T) for ``logmel`` and
    ``fbank``, (3, n_mfcc, T) for ``mfcc``, (1, n_mels, T) or (1, S, S) for ``imagenet``,
    (1, 1024, 1) for ``birdnet``, (1, D, 1) for ``egemaps``, ``compare`` and ``hf`` (every
    layer of its encoder: (L + 1, D, 1)), (1, 1, N) for ``waveform``. ``threadsafe``:
    whether threads may call it at once (the features stage's CPU workers do; BirdNET's
    interpreter and openSMILE are called from one thread).
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.shape, self.segment_samples = cfg.shape, cfg.segment_samples  # refuses auto values
        self.transform = TRANSFORMS[cfg.kind](cfg)
        self.threadsafe = getattr(self.transform, "threadsafe", True)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        out = self.transform(wave)
        return out if out.dim() == 4 else out.unsqueeze(1)  # (B, C, F, T)
