"""``synthetic``: a deterministic miniature of the Xeno-canto bird-species problem.

Species come in genera of three: species of one genus share a call shape and differ
by ~10 % in pitch and by syllable timing, so they are confusable. Class counts are
long-tailed (Zipf, ``max:min = imbalance``). Every *recording* has its own pitch and
tempo offset, background noise colour and level, a steady background hum and a
microphone EQ tilt, and is cut into consecutive clips: clips of one recording share
that fingerprint, which is what makes a leaky (ungrouped) split score higher than a
grouped one. The recording id is the manifest's ``group``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from audioclf.data.manifest import Entry, describe

if TYPE_CHECKING:
    from audioclf.config.datasets import SyntheticConfig

SHAPES = ("up", "down", "arch", "trill", "two_note", "hook")
NOISES = ("white", "pink", "brown", "wind", "rain", "insects")
SPECIES_PER_GENUS = 3
# difficulty: pitch step between members of a genus, per-recording pitch spread (log sd),
# and the chance that a recording also holds a distant singer of another species
GENUS_STEP = 0.10
PITCH_SD = 0.02
DISTRACTOR_P = 0.2


@dataclass(frozen=True)
class Species:
    """A characteristic call: syllables of one shape, grouped into songs."""

    name: str
    shape: str
    f_center: float  # Hz
    bandwidth: float  # Hz swept by one syllable
    syllable_s: float  # syllable duration, seconds
    rate: float  # syllables per second within a song
    song_syllables: tuple[int, int]
    harmonics: int
    trill_hz: float  # frequency-modulation rate for the ``trill`` shape


def make_species(n_classes: int, rng: np.random.Generator) -> list[Species]:
    """Draw ``n_classes`` species, three per genus, as (index-ordered) call templates."""
    species = []
    for i in range(n_classes):
        genus, member = divmod(i, SPECIES_PER_GENUS)
        g = np.random.default_rng([int(rng.integers(2**31)), genus])  # genus traits
        # shared by the genus
        shape = SHAPES[genus % len(SHAPES)]
        base_f = g.uniform(1800, 6500)
        base_syl = g.uniform(0.05, 0.2)
        base_rate = g.uniform(3, 9)
        # what sets members apart: ~10 % pitch steps, timing and harmonic content
        species.append(
            Species(
                name=f"species_{i:02d}",
                shape=shape,
                f_center=base_f * (1.0 + GENUS_STEP * (member - 1)) * rng.uniform(0.98, 1.02),
                bandwidth=base_f * rng.uniform(0.1, 0.35),
                syllable_s=base_syl * rng.uniform(0.75, 1.3),
                rate=base_rate * rng.uniform(0.7, 1.4),
                song_syllables=(int(rng.integers(2, 4)), int(rng.integers(4, 9))),
                harmonics=int(rng.integers(1, 4)),
                trill_hz=float(rng.uniform(25, 70)),
            )
        )
    return species


def class_counts(cfg: SyntheticConfig) -> list[int]:
    """Clips per class, Zipf-distributed from ``max_clips_per_class`` down by ``imbalance``.

    The rarest class keeps at least three recordings' worth of clips, so a grouped
    split can place one recording in each of train, validation and test.
    """
    exponent = math.log(cfg.imbalance) / math.log(cfg.n_classes) if cfg.n_classes > 1 else 0.0
    floor = 3 * cfg.clips_per_recording[0]
    return [
        max(floor, round(cfg.max_clips_per_class * (k + 1) ** -exponent))
        for k in range(cfg.n_classes)
    ]


def recording_sizes(n_clips: int, lo: int, hi: int, rng: np.random.Generator) -> list[int]:
    """Cut ``n_clips`` into recordings of ``lo..hi`` clips (at least three recordings)."""
    sizes: list[int] = []
    while sum(sizes) < n_clips:
        sizes.append(int(rng.integers(lo, hi + 1)))
    sizes[-1] -= sum(sizes) - n_clips
    if sizes[-1] < lo and len(sizes) > 1:
        last = sizes.pop()
        sizes[-1] += last
    while len(sizes) < 3:  # split the largest recording until there are three
        big = max(range(len(sizes)), key=sizes.__getitem__)
        half = sizes[big] // 2
        sizes[big] -= half
        sizes.append(half)
    return sizes


def _syllable(sp: Species, pitch: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = max(8, int(sp.syllable_s * rng.uniform(0.85, 1.15) * sr))
    u = np.linspace(0.0, 1.0, n, endpoint=False)
    f0, bw = sp.f_center * pitch, sp.bandwidth * pitch
    freq = {
        "up": f0 - bw / 2 + bw * u,
        "down": f0 + bw / 2 - bw * u,
        "arch": f0 - bw / 2 + bw * (1 - (2 * u - 1) ** 2),
        "trill": f0 + bw / 2 * np.sin(2 * np.pi * sp.trill_hz * u * n / sr),
        "two_note": np.where(u < 0.5, f0 - bw / 2, f0 + bw / 2),
        "hook": f0 - bw / 2 + bw * (2 * u - 1) ** 2,
    }[sp.shape]
    phase = 2 * np.pi * np.cumsum(freq) / sr
    wave = sum(
        0.6 ** (h - 1) * np.sin(h * phase) * (h * freq.max() < sr / 2)
        for h in range(1, sp.harmonics + 1)
    )
    envelope = np.sin(np.pi * u) ** 0.7
    return wave * envelope


def _song(sp: Species, pitch: float, tempo: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n_syl = int(rng.integers(sp.song_syllables[0], sp.song_syllables[1] + 1))
    period = int(sr / (sp.rate * tempo))
    syllables = [_syllable(sp, pitch, sr, rng) for _ in range(n_syl)]
    song = np.zeros(period * (n_syl - 1) + max(len(s) for s in syllables))
    for k, syl in enumerate(syllables):
        start = k * period + int(rng.integers(0, max(1, period // 8)))
        # the last syllable's jitter can start it past the end of a short song
        song[start : start + len(syl)] += syl[: max(0, len(song) - start)]
    return song


def _coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ~ f**-exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=float)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return noise / (noise.std() + 1e-12)


def _background(kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    if kind == "white":
        noise = _coloured_noise(n, 0.0, rng)
    elif kind == "pink":
        noise = _coloured_noise(n, 1.0, rng)
    elif kind == "brown":
        noise = _coloured_noise(n, 2.0, rng)
    elif kind == "wind":
        gusts = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6))
        noise = _coloured_noise(n, 1.6, rng) * gusts
    elif kind == "rain":
        drops = (rng.random(n) < rng.uniform(2e-4, 1e-3)) * rng.standard_normal(n) * 30
        noise = np.convolve(
            drops, np.exp(-np.arange(64) / 8.0), mode="same"
        ) + 0.3 * _coloured_noise(n, 0.5, rng)
    else:  # insects: a band of high, amplitude-modulated noise
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / sr)
        centre = rng.uniform(3500, 8000)
        spectrum *= np.exp(-0.5 * ((f - centre) / rng.uniform(300, 1200)) ** 2)
        noise = np.fft.irfft(spectrum, n) * (1 + 0.9 * np.sin(2 * np.pi * rng.uniform(5, 30) * t))
    return noise / (noise.std() + 1e-12)


def synthesize_recording(
    sp: Species,
    others: list[Species],
    n_clips: int,
    clip_s: float,
    snr_db: tuple[float, float],
    sr: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One continuous field recording of ``n_clips * clip_s`` seconds with a singing ``sp``.

    Returns:
        float32 waveform of shape (n_clips * clip_samples,), peak below 1.
    """
    clip_n = int(round(clip_s * sr))
    n = clip_n * n_clips
    pitch = math.exp(rng.normal(0, PITCH_SD))  # individual bird / population offset
    tempo = math.exp(rng.normal(0, 0.08))
    calls = np.zeros(n)
    for c in range(n_clips):  # every clip holds at least one song
        for _ in range(int(rng.integers(1, 3))):
            song = _song(sp, pitch, tempo, sr, rng) * rng.uniform(0.4, 1.0)
            start = c * clip_n + int(rng.integers(0, max(1, clip_n - len(song) // 2)))
            calls[start : start + len(song)] += song[: n - start]
    active = np.abs(calls) > 1e-3
    calls /= np.sqrt(np.mean(calls[active] ** 2)) + 1e-12
    if others and rng.random() < DISTRACTOR_P:  # another species singing far away
        other = others[int(rng.integers(len(others)))]
        for _ in range(int(rng.integers(1, n_clips + 1))):
            song = _song(other, 1.0, 1.0, sr, rng) * rng.uniform(0.1, 0.3)
            start = int(rng.integers(0, max(1, n - len(song))))
            calls[start : start + len(song)] += song[: n - start]
    t = np.arange(n) / sr
    noise = _background(NOISES[int(rng.integers(len(NOISES)))], n, sr, rng)
    for _ in range(int(rng.integers(0, 3))):  # steady hum: engine, generator, insect drone
        noise += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * rng.uniform(150, 9000) * t)
    noise /= noise.std() + 1e-12
    snr = rng.uniform(*snr_db)
    mix = calls + noise * 10 ** (-snr / 20)
    tilt = rng.uniform(-0.6, 0.6)  # microphone / recorder colouring
    spectrum = np.fft.rfft(mix)
    f = np.fft.rfftfreq(n, 1 / sr)
    mix = np.fft.irfft(spectrum * ((f + 500) / 4000) ** tilt, n)
    return (mix / (np.abs(mix).max() + 1e-12) * rng.uniform(0.3, 0.9)).astype(np.float32)


def generate(cfg: SyntheticConfig, seed: int, out_dir: Path) -> list[Entry]:
    """Write the dataset's WAV files under ``out_dir/audio`` and return their manifest entries.

    Deterministic in ``seed``: every recording draws from its own generator, so the
    output does not depend on the order in which recordings are synthesised.
    """
    rng = np.random.default_rng(seed)
    species = make_species(cfg.n_classes, rng)
    lo, hi = cfg.clips_per_recording
    entries = []
    rec_id = 0
    for c, (sp, n_clips) in enumerate(zip(species, class_counts(cfg), strict=True)):
        sizes = recording_sizes(n_clips, lo, hi, np.random.default_rng([seed, c]))
        for size in sizes:
            rec_id += 1
            group = f"REC{rec_id:05d}"
            r = np.random.default_rng([seed, c, rec_id])
            others = [s for s in species if s is not sp]
            wave = synthesize_recording(
                sp, others, size, cfg.clip_seconds, cfg.snr_db, cfg.sample_rate, r
            )
            clip_n = int(round(cfg.clip_seconds * cfg.sample_rate))
            folder = out_dir / "audio" / sp.name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(size):
                path = folder / f"{group}_{k:02d}.wav"
                sf.write(
                    str(path),
                    wave[k * clip_n : (k + 1) * clip_n],
                    cfg.sample_rate,
                    subtype="PCM_16",
                )
                entries.append(describe(path, out_dir, label=sp.name, group=group))
    return entries
