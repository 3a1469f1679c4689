"""Typed params of the features stage: ``features.*`` (a field of :class:`audioclf.config.Params`).

Validation happens when params are loaded, so a bad value fails before any audio
is decoded, naming the key and the allowed values. ``kind`` is resolved from the model
when params are loaded (:func:`audioclf.config.frontends.for_model`); ``sample_rate``,
``n_fft``, ``hop_length``, ``n_mels`` and ``segment_seconds`` may be ``auto``, chosen from
the data's profile by the features stage (:func:`audioclf.config.frontends.resolve_auto`).
A config with an ``auto`` left in it describes no features yet: its shape and frame
counts refuse to answer.
"""

from __future__ import annotations

import dataclasses

from audioclf.config.schema import ParamsError, at_most, check, choice, fits_memory

AUTO = "auto"
# logmel: (1, n_mels, T) | mfcc: (3, n_mfcc, T) | fbank: AST's Kaldi filterbanks (1, 128, T) |
# imagenet: log-mel scaled to [0, 1] as an image | birdnet: BirdNET v2.4's 1024-d embedding |
# egemaps, compare: openSMILE's eGeMAPS v02 and ComParE 2016 functionals, one vector per segment |
# waveform: the segment's samples (1, 1, N), for a Hub checkpoint's own feature extractor (model: hf) |
# hf: a Hub audio encoder's hidden states of one layer, mean-pooled over the segment (1, D, 1), or of
#   every layer (encoder_layer: all) stacked as channels (L + 1, D, 1)
FRONTENDS = (
    *(AUTO, "logmel", "mfcc", "fbank", "imagenet", "birdnet", "egemaps", "compare"),
    *("waveform", "hf"),
)
SHORT_CLIPS = ("pad", "repeat")
DEVICES = ("auto", "cpu", "cuda")
POOLS = ("mean", "none")
AUTO_FIELDS = ("sample_rate", "n_fft", "hop_length", "n_mels", "segment_seconds")
BIRDNET_DIM = 1024  # BirdNET v2.4's embedding, the tensor before its classification layer
FUNCTIONALS = {"egemaps": 88, "compare": 6373}  # openSMILE functionals per segment, by kind
# upper bounds of the size-like values (what one decode, one segment or one batch may hold)
MAX_RATE = 384_000  # Hz: the highest rate audio interfaces record at
MAX_N_FFT = 65_536
MAX_N_MELS = 2048
MAX_FILE_SECONDS = 4 * 3600.0  # 4 h decoded at 48 kHz: 2.8 GB of float32
MAX_OVERLAP = 100  # segments starting within one segment length (segment_hop_seconds)
MAX_ENCODER_DIM = 16384  # an encoder's hidden size (Whisper large: 1280)
MAX_SEGMENT_VALUES = 1 << 26  # floats in one segment's features: 256 MB
# front-ends that give one vector per segment (1, D, 1), not a spectrogram; the heads read them
VECTOR_KINDS = ("birdnet", *FUNCTIONALS, "hf")
# what the features stage fills in from a kind=hf encoder's files (audioclf.features.encoder)
ENCODER_RESOLVED = ("encoder_dim", "encoder_sha256")
ALL_LAYERS = "all"  # features.encoder_layer: every hidden state, for a learned weighted sum
MAX_ENCODER_DEPTH = 1024  # transformer layers of an encoder (Whisper large: 32)


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    """Decoding, segmentation and the front-end, and where the cache lives.

    Every field except ``batch_size``, ``workers``, ``device``, ``store_dir`` and
    ``min_coverage`` may shape the features; those that do for the kind are part of the
    cache key (:func:`audioclf.features.store.frontend_key`). ``image_size`` applies to
    ``imagenet`` only, ``embedding_pool`` to the vector kinds (``birdnet``, ``egemaps``,
    ``compare``, ``hf``), ``n_mfcc`` and ``delta_width`` to ``mfcc`` only, the ``encoder_*``
    fields to ``hf`` only: ``encoder`` (a Hub id or folder) at ``encoder_revision``, its hidden
    states of layer ``encoder_layer`` (0: the input to the first transformer layer; -1: the
    last layer's output; ``all``: every one of them, as channels, for ``model: embedding``'s
    learned weighted sum); ``encoder_dim`` (the hidden size), ``encoder_depth`` (its transformer
    layers) and ``encoder_sha256`` (of its weights) are filled in by the features stage from the
    encoder's files.
    """

    kind: str = AUTO
    sample_rate: int | str = 22050
    n_fft: int | str = 2048
    hop_length: int | str = 512
    n_mels: int | str = 128
    f_min: float = 0.0
    f_max: float | None = None
    highpass_order: int = 0
    top_db: float = 80.0
    n_mfcc: int = 20
    delta_width: int = 9
    segment_seconds: float | str = 4.0
    segment_hop_seconds: float | None = None
    short_clips: str = "pad"
    image_size: int | None = None
    embedding_pool: str = "mean"
    encoder: str | None = None
    encoder_revision: str = "main"
    encoder_layer: int | str = -1
    encoder_dim: int | None = None
    encoder_depth: int | None = None
    encoder_sha256: str | None = None
    max_file_seconds: float = 600.0
    batch_size: int = 32
    workers: int = 0
    device: str = "auto"
    store_dir: str = "data/feature_store"
    min_coverage: float = 0.9

    def __post_init__(self):
        choice(self.kind, FRONTENDS, "features.kind")
        choice(self.short_clips, SHORT_CLIPS, "features.short_clips")
        choice(self.device, DEVICES, "features.device")
        choice(self.embedding_pool, POOLS, "features.embedding_pool")
        for name in AUTO_FIELDS:
            value = getattr(self, name)
            check(
                value == AUTO or not isinstance(value, str) and value > 0,
                f"features.{name}",
                f"must be positive or auto, got {value!r}",
            )
        for name in ("n_mfcc", "batch_size"):
            value = getattr(self, name)
            check(value > 0, f"features.{name}", f"must be positive, got {value}")
        for name, limit in (
            ("sample_rate", MAX_RATE),
            ("n_fft", MAX_N_FFT),
            ("n_mels", MAX_N_MELS),
        ):
            value = getattr(self, name)
            if value != AUTO:
                at_most(value, limit, f"features.{name}", "a bound on the front-end's size")
        at_most(self.n_mfcc, MAX_N_MELS, "features.n_mfcc", "a bound on the front-end's size")
        at_most(self.batch_size, 65536, "features.batch_size", "segments computed at once")
        at_most(self.workers, 1024, "features.workers", "decoding processes")
        at_most(self.image_size or 0, 4096, "features.image_size", "pixels on a side")
        at_most(self.delta_width, 99, "features.delta_width", "frames per delta")
        at_most(self.max_file_seconds, MAX_FILE_SECONDS, "features.max_file_seconds", "one decode")
        check(
            self.image_size is None or self.image_size >= 32,
            "features.image_size",
            f"must be null (the spectrogram's own size) or >= 32, got {self.image_size}",
        )
        self._check_common()
        self._check_encoder()
        if all(getattr(self, f) != AUTO for f in AUTO_FIELDS):
            self._check_resolved()

    @property
    def resolved(self) -> bool:
        """Whether every value is concrete (no ``auto`` left, and for ``hf`` the encoder's size
        read from its files): only then does it describe features."""
        encoder = self.kind != "hf" or all(getattr(self, f) is not None for f in ENCODER_RESOLVED)
        encoder = encoder and (self.encoder_layer != ALL_LAYERS or self.encoder_depth is not None)
        return encoder and self.kind != AUTO and all(getattr(self, f) != AUTO for f in AUTO_FIELDS)

    def _check_encoder(self) -> None:
        check(
            self.kind != "hf" or isinstance(self.encoder, str) and self.encoder.strip() != "",
            "features.encoder",
            "must name the audio encoder of features.kind=hf: a Hugging Face model id (e.g. "
            f"microsoft/wavlm-base-plus) or a folder written by save_pretrained; got {self.encoder!r}",
        )
        check(
            isinstance(self.encoder_revision, str)
            and self.encoder_revision.strip() != ""
            and " " not in self.encoder_revision,
            "features.encoder_revision",
            f"must be a commit hash, tag or branch of features.encoder, got {self.encoder_revision!r}",
        )
        layer = self.encoder_layer
        check(
            layer == ALL_LAYERS or isinstance(layer, int) and abs(layer) <= MAX_ENCODER_DEPTH,
            "features.encoder_layer",
            f"must be an integer layer index (0 = the input to the first transformer layer, "
            f"-1 = the last layer) or {ALL_LAYERS} (every layer, weighted by model=embedding), "
            f"got {layer!r}",
        )
        for name, limit in (("encoder_dim", MAX_ENCODER_DIM), ("encoder_depth", MAX_ENCODER_DEPTH)):
            value = getattr(self, name)
            check(
                value is None or 0 < value <= limit,
                f"features.{name}",
                f"is read from the encoder's config by the features stage; leave it null, got {value}",
            )

    def require_resolved(self, what: str) -> None:
        """Raise :class:`ParamsError` naming ``what`` if an ``auto`` value is left."""
        if not self.resolved:
            shown = (*AUTO_FIELDS, *ENCODER_RESOLVED, "encoder_depth")
            raise ParamsError(
                f"params: 'features' still holds auto values (kind={self.kind!r}, "
                f"{', '.join(f'{f}={getattr(self, f)!r}' for f in shown)}"
                f"): its {what} is known once they are resolved (audioclf.config.frontends."
                "for_model, resolve_auto; kind=hf: audioclf.features.encoder.resolve)"
            )

    def _check_common(self) -> None:
        """The checks that need no concrete rate or segment."""
        check(self.top_db > 0, "features.top_db", f"must be positive, got {self.top_db}")
        check(
            0 <= self.highpass_order <= 8,
            "features.highpass_order",
            f"must be in [0, 8] (0 = no high-pass), got {self.highpass_order}",
        )
        check(
            self.highpass_order == 0 or self.f_min > 0,
            "features.highpass_order",
            f"needs a cut-off: set features.f_min > 0 (got f_min={self.f_min}) or highpass_order: 0",
        )
        check(
            self.delta_width >= 3 and self.delta_width % 2 == 1,
            "features.delta_width",
            f"must be an odd number >= 3, got {self.delta_width}",
        )
        check(
            self.workers >= 0,
            "features.workers",
            f"must be >= 0 (0 = one per core), got {self.workers}",
        )
        check(self.store_dir.strip() != "", "features.store_dir", "must be a folder path")
        check(
            0 <= self.min_coverage <= 1,
            "features.min_coverage",
            f"must be a fraction in [0, 1], got {self.min_coverage}",
        )
        hop = self.segment_hop_seconds
        check(
            hop is None or hop > 0,
            "features.segment_hop_seconds",
            f"must be null or positive, got {hop}",
        )

    def _check_resolved(self) -> None:
        """The checks between values that may have been ``auto``."""
        check(
            self.hop_length <= self.n_fft,
            "features.hop_length",
            f"must be <= n_fft ({self.n_fft}), got {self.hop_length}",
        )
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        check(
            0 <= self.f_min < f_max,
            "features.f_min",
            f"must be in [0, f_max={f_max:g}), got {self.f_min}",
        )
        check(
            f_max <= nyquist,
            "features.f_max",
            f"must be <= sample_rate/2 ({nyquist:g}), got {f_max}",
        )
        check(
            self.n_mfcc <= self.n_mels,
            "features.n_mfcc",
            f"must be <= n_mels ({self.n_mels}), got {self.n_mfcc}",
        )
        check(
            self.segment_seconds * self.sample_rate >= self.n_fft,
            "features.segment_seconds",
            f"must hold at least one FFT window ({self.n_fft} samples), got {self.segment_seconds}",
        )
        if self.kind == "mfcc":
            check(
                self.n_frames >= self.delta_width,
                "features.delta_width",
                f"must be <= the frames per segment ({self.n_frames}) for the deltas, got {self.delta_width}",
            )
        check(
            self.max_file_seconds >= self.segment_seconds,
            "features.max_file_seconds",
            f"must be >= segment_seconds ({self.segment_seconds}), got {self.max_file_seconds}",
        )
        hop = self.segment_hop_seconds
        check(
            hop is None or hop >= self.segment_seconds / MAX_OVERLAP,
            "features.segment_hop_seconds",
            f"must be null or >= segment_seconds / {MAX_OVERLAP} = "
            f"{self.segment_seconds / MAX_OVERLAP:g} (each hop stores one more segment's "
            f"features), got {hop}",
        )
        if self.resolved:
            values = self.shape[0] * self.shape[1] * self.shape[2]
            check(
                values <= MAX_SEGMENT_VALUES,
                "features.segment_seconds",
                f"gives {self.shape} = {values:,} values per segment with n_mels={self.n_mels}, "
                f"hop_length={self.hop_length}, above {MAX_SEGMENT_VALUES:,} (256 MB); shorten "
                f"the segment or raise hop_length",
            )
            fits_memory(
                4.0 * self.batch_size * values,
                "features.batch_size",
                f"{self.batch_size} segments of {values:,} float32 values",
                "lower features.batch_size",
            )
            fits_memory(
                4.0 * self.max_file_seconds * self.sample_rate,
                "features.max_file_seconds",
                f"one file decoded as float32 at {self.sample_rate} Hz",
                "lower features.max_file_seconds",
            )

    @property
    def segment_samples(self) -> int:
        if AUTO in (self.sample_rate, self.segment_seconds):
            self.require_resolved("segment length")
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        """Samples between segment starts (``segment_hop_seconds``; null: back to back)."""
        if self.segment_hop_seconds is None:
            return self.segment_samples
        return max(1, int(round(self.segment_hop_seconds * self.sample_rate)))

    @property
    def n_frames(self) -> int:
        """Frames (the last axis) of one segment's features."""
        self.require_resolved("frame count")
        if self.kind in VECTOR_KINDS:
            return 1  # one embedding per 3-s window, one vector of functionals per segment
        if self.kind == "waveform":
            return self.segment_samples
        if self.kind == "imagenet" and self.image_size is not None:
            return self.image_size
        if self.kind == "fbank":  # Kaldi frames lie wholly inside the signal (snip_edges)
            return 1 + (self.segment_samples - self.n_fft) // self.hop_length
        # centred STFT: one frame per hop plus the frame at t = 0
        return 1 + self.segment_samples // self.hop_length

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, bands, frames) of one segment's features."""
        self.require_resolved("shape")
        if self.kind == "mfcc":
            return 3, self.n_mfcc, self.n_frames  # coefficients, delta, delta-delta
        if self.kind == "birdnet":
            return 1, BIRDNET_DIM, 1
        if self.kind == "hf":  # every hidden state: the input to the first layer and each output
            states = self.encoder_depth + 1 if self.encoder_layer == ALL_LAYERS else 1
            return states, self.encoder_dim, 1
        if self.kind == "waveform":
            return 1, 1, self.segment_samples
        if self.kind in FUNCTIONALS:
            return 1, FUNCTIONALS[self.kind], 1
        if self.kind == "imagenet" and self.image_size is not None:
            return 1, self.image_size, self.image_size
        return 1, self.n_mels, self.n_frames
