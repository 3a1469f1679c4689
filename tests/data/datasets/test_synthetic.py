import dataclasses
from collections import Counter, defaultdict

import numpy as np
import soundfile as sf

from audioclf.config.datasets import SyntheticConfig
from audioclf.data.datasets.synthetic import class_counts, generate, make_species, recording_sizes
from audioclf.data.manifest import sha256_file


def test_default_counts_are_long_tailed():
    counts = class_counts(SyntheticConfig())
    assert len(counts) == 24
    assert max(counts) / min(counts) >= 5
    assert counts == sorted(counts, reverse=True)


def test_recording_sizes_cover_all_clips_with_three_recordings():
    for n in range(6, 80):
        for seed in range(5):
            sizes = recording_sizes(n, 2, 5, np.random.default_rng(seed))
            assert sum(sizes) == n and min(sizes) >= 1 and len(sizes) >= 3


def test_genus_members_share_shape_and_differ_in_pitch():
    species = make_species(6, np.random.default_rng(0))
    assert species[0].shape == species[1].shape == species[2].shape
    assert species[0].f_center < species[1].f_center < species[2].f_center


def test_generation_is_deterministic(tmp_path, tiny_params):
    cfg = dataclasses.replace(  # a few short clips: what is compared is every byte of each
        tiny_params.data.synthetic, n_classes=3, max_clips_per_class=6, clip_seconds=0.25
    )
    entries = generate(cfg, tiny_params.seed, tmp_path / "first")
    again = generate(cfg, tiny_params.seed, tmp_path / "again")
    assert [(e.path, e.sha256) for e in entries] == [(e.path, e.sha256) for e in again]
    other = generate(cfg, tiny_params.seed + 1, tmp_path / "other")
    assert {e.sha256 for e in other}.isdisjoint({e.sha256 for e in entries})


def test_recordings_are_grouped(tiny_dataset):
    root, entries = tiny_dataset
    labels_per_group = defaultdict(set)
    for e in entries:
        labels_per_group[e.group].add(e.label)
    assert all(len(labels) == 1 for labels in labels_per_group.values())
    groups_per_label = Counter(next(iter(v)) for v in labels_per_group.values())
    assert min(groups_per_label.values()) >= 3


def test_files_match_manifest(tiny_params, tiny_dataset):
    root, entries = tiny_dataset
    cfg = tiny_params.data.synthetic
    for e in entries[:5]:
        audio, sr = sf.read(root / e.path)
        assert sr == cfg.sample_rate == e.sample_rate and e.channels == 1
        assert (
            len(audio) == round(cfg.clip_seconds * sr) and abs(e.duration - cfg.clip_seconds) < 1e-6
        )
        assert sha256_file(root / e.path) == e.sha256
        assert 0 < np.abs(audio).max() < 1


def test_a_song_whose_last_syllable_starts_past_its_end_is_cut():
    # a slow song of short syllables: the timing jitter (up to 1/8 of a period) can start the
    # last syllable after the song's end
    from audioclf.data.datasets.synthetic import Species, _song

    sp = Species("s", "up", 3000.0, 500.0, 0.005, 1.0, (2, 3), 1, 30.0)
    for seed in range(50):
        song = _song(sp, 1.0, 1.0, 8000, np.random.default_rng(seed))
        assert np.isfinite(song).all() and len(song) >= 8000
