"""Kaldi-compatible filterbanks: the input the AudioSet AST checkpoint was trained on.

The AST repository's data loader and ``transformers``' ``ASTFeatureExtractor`` compute
``torchaudio.compliance.kaldi.fbank`` on 16-kHz audio: 25-ms Hann ("hanning") frames every
10 ms inside the signal (``snip_edges``), DC offset removed, pre-emphasis 0.97, power
spectrum, 128 mel bins from 20 Hz to the Nyquist frequency, natural log; no dither.
:class:`KaldiFbank` is that call, batched. The normalisation (AudioSet's mean and twice
its std by default) is the checkpoint's input statistics, applied by training and
inference like any other (:func:`audioclf.models.pretrained.input_statistics`), so the
store keeps the un-normalised filterbanks.
"""

from __future__ import annotations

import torch
from torch import nn

from audioclf.config.features import FeaturesConfig


class KaldiFbank(nn.Module):
    """Waveform to Kaldi log mel filterbanks, as ``ASTFeatureExtractor`` computes them.

    Input (B, N) float waveform at ``cfg.sample_rate``; output (B, n_mels, 1 + (N - n_fft) // hop):
    bins along the second axis (bin 0 the lowest), frames along the last, like the log-mel.
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        # torchaudio takes the window and shift in milliseconds
        self.sample_rate, self.n_mels, self.low_freq = cfg.sample_rate, cfg.n_mels, cfg.f_min
        self.frame_length_ms = 1000.0 * cfg.n_fft / cfg.sample_rate
        self.frame_shift_ms = 1000.0 * cfg.hop_length / cfg.sample_rate

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, "
            f"frame_length_ms={self.frame_length_ms:g}, frame_shift_ms={self.frame_shift_ms:g}"
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # imported here: torchaudio loads its compiled library, which only this front-end needs
        from torchaudio.compliance import kaldi

        out = [
            kaldi.fbank(
                item[None],  # (1, N): kaldi.fbank takes one channel at a time
                sample_frequency=self.sample_rate,
                window_type="hanning",
                num_mel_bins=self.n_mels,
                frame_length=self.frame_length_ms,
                frame_shift=self.frame_shift_ms,
                low_freq=self.low_freq,
                dither=0.0,
            )  # (T, n_mels)
            for item in wave
        ]
        return torch.stack(out).transpose(1, 2)  # (B, n_mels, T)
