"""The data's profile: rates, channels, durations, classes and groups from the manifest."""

from audioclf.data.manifest import Entry
from audioclf.data.profile import data_profile, profile_table


def entry(i, label, group, duration, rate, channels=1):
    return Entry(f"{i}.wav", label, group, duration, rate, channels, f"{i:064x}")


ENTRIES = [
    entry(0, "a", "s1", 0.4, 8000),
    entry(1, "a", "s1", 0.5, 8000),
    entry(2, "b", "s2", 0.6, 8000, 2),
    entry(3, "b", "s2", 0.5, 16000),
    entry(4, "c", "s3", 2.0, 44100),
]


def test_profile_counts_and_quantiles():
    p = data_profile(ENTRIES)
    assert p["files"] == 5 and p["hours"] == round(4.0 / 3600, 4)
    assert p["sample_rate"] == {"counts": {"8000": 3, "16000": 1, "44100": 1}, "median": 8000}
    assert p["channels"] == {"1": 4, "2": 1}
    assert p["duration_s"] == {"min": 0.4, "p10": 0.44, "p50": 0.5, "p90": 1.44, "max": 2.0}
    assert p["classes"] == {"a": 2, "b": 2, "c": 1} and p["n_classes"] == 3
    assert p["groups"] == 3 and p["files_per_group"] == {"min": 1, "p50": 2.0, "max": 2}


def test_the_median_rate_is_one_some_file_has():
    p = data_profile([entry(0, "a", "g", 1.0, 8000), entry(1, "a", "g", 1.0, 16000)])
    assert p["sample_rate"]["median"] == 8000  # the lower median, not 12000


def test_table_and_empty_manifest():
    lines = profile_table(data_profile(ENTRIES)).splitlines()
    assert lines[0].startswith("files        5")
    assert "8000 Hz x3" in lines[1] and "2 ch x1" in lines[2] and "p90 1.44" in lines[3]
    assert "classes      3 (files per class 1..2)" in lines[4]
    assert profile_table(data_profile([])) == "profile: no files"
