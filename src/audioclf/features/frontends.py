"""Front-ends: waveform segments to features, one class per ``features.kind`` (:class:`FrontEnd`).

The log-mel and MFCC(+delta, delta-delta) equal librosa (``power_to_db(melspectrogram(...))``,
``feature.mfcc`` and ``feature.delta``) to float32 rounding, and run batched in plain torch,
the same code on the CPU and on a GPU; ``imagenet`` is the log-mel as an image. The
pretrained models' own front-ends live beside them: AST's Kaldi filterbanks
(:mod:`~audioclf.features.fbank`) and BirdNET's embeddings (:mod:`~audioclf.features.birdnet`);
openSMILE's functionals are in :mod:`~audioclf.features.opensmile`.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import torch
from torch import nn

from audioclf.config.features import FeaturesConfig
from audioclf.features.birdnet import BirdNetEmbedding
from audioclf.features.fbank import KaldiFbank
from audioclf.features.opensmile import Functionals

AMIN = 1e-10  # power floor before the logarithm (librosa's power_to_db amin)
CPU_TILE_FRAMES = 128  # frames of a batch transformed together on the CPU


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

    librosa's STFT (periodic Hann window, centred, zero-padded), the power spectrum through
    librosa's Slaney mel filterbank (times ``|H(f)|^2`` of a Butterworth high-pass at ``f_min``
    when ``highpass_order > 0``), then ``10 log10(max(power, 1e-10))`` floored at ``top_db``
    below each item's peak. On the CPU the frames go through ``torch.fft.rfft`` and the
    filterbank a tile of ``CPU_TILE_FRAMES`` at a time, into buffers reused by every tile, so
    that a tile's spectrum stays in the core's cache: ``torch.stft`` on a whole batch made the
    features stage ~2x slower. A GPU takes all frames at once.

    Input (B, N) float waveform at ``cfg.sample_rate``; output (B, n_mels, 1 + N // hop).

    >>> LogMel(FeaturesConfig(kind="logmel", n_mels=40))(torch.zeros(2, 22050)).shape
    torch.Size([2, 40, 44])
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.n_fft, self.hop_length, self.top_db = cfg.n_fft, cfg.hop_length, cfg.top_db
        self.register_buffer("window", torch.hann_window(cfg.n_fft))  # periodic, like librosa's
        self.register_buffer("fb_t", torch.from_numpy(mel_filterbank(cfg).T.copy()))  # (F, n_mels)

    def extra_repr(self) -> str:
        return (
            f"n_fft={self.n_fft}, hop_length={self.hop_length}, n_mels={self.fb_t.shape[1]}, "
            f"top_db={self.top_db}"
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        batch, pad = wave.shape[0], self.n_fft // 2
        frames = nn.functional.pad(wave, (pad, pad)).unfold(-1, self.n_fft, self.hop_length)
        n_frames = frames.shape[1]  # frames: (B, T, n_fft)
        tile = n_frames if wave.is_cuda else max(1, min(n_frames, CPU_TILE_FRAMES // batch))
        mel = wave.new_empty((batch, n_frames, self.fb_t.shape[1]))  # (B, T, n_mels)
        windowed = wave.new_empty((batch, tile, self.n_fft))
        power = wave.new_empty((batch, tile, self.fb_t.shape[0]))  # (B, tile, F)
        for start in range(0, n_frames, tile):
            k = min(tile, n_frames - start)
            torch.mul(frames[:, start : start + k], self.window, out=windowed[:, :k])
            spec = torch.fft.rfft(windowed[:, :k])  # (B, k, F)
            torch.abs(spec, out=power[:, :k]).square_()
            mel[:, start : start + k] = power[:, :k] @ self.fb_t
        db = 10.0 * torch.log10(mel.transpose(1, 2).clamp_min(AMIN))  # (B, n_mels, T)
        return torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.top_db)


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


TRANSFORMS: dict[str, type[nn.Module]] = {
    "logmel": LogMel,
    "mfcc": MFCC,
    "fbank": KaldiFbank,
    "imagenet": ImageNetImage,
    "birdnet": BirdNetEmbedding,
    "egemaps": Functionals,
    "compare": Functionals,
}


class FrontEnd(nn.Module):
    """The configured front-end with a channel axis: (B, segment_samples) -> (B, C, F, T).

    ``shape`` is (C, F, T) (:attr:`FeaturesConfig.shape`): (1, n_mels, T) for ``logmel`` and
    ``fbank``, (3, n_mfcc, T) for ``mfcc``, (1, n_mels, T) or (1, S, S) for ``imagenet``,
    (1, 1024, 1) for ``birdnet``, (1, D, 1) for ``egemaps`` and ``compare``. ``threadsafe``:
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
