"""The features benchmark's yardstick: a per-file ``librosa.load`` + ``melspectrogram`` +
``power_to_db`` loop, one file after another, timed after a warm-up.

Run by ``tests/benchmarks/features.py`` in a process of its own that never imports audioclf
(torch's libraries, loaded by audioclf, change how fast librosa's own code runs). Prints one
JSON line of timings.

    python tests/benchmarks/naive_librosa.py AUDIO_DIR FILES SAMPLE_RATE N_FFT HOP N_MELS
"""

import csv
import json
import resource
import sys
import time
from pathlib import Path

import librosa

WARMUP_FILES = 8  # numba compiles on first use: time only the loop after these


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(folder: Path, n: int, sr: int, n_fft: int, hop: int, n_mels: int) -> dict:
    with open(folder / "manifest.csv", newline="") as fh:
        paths = [folder / row["path"] for row in csv.DictReader(fh)][:n]

    def one(path: Path) -> float:
        y, rate = librosa.load(path, sr=sr)
        mel = librosa.feature.melspectrogram(
            y=y, sr=rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels
        )
        librosa.power_to_db(mel)
        return len(y) / rate

    for path in paths[:WARMUP_FILES]:
        one(path)
    start, cpu = time.perf_counter(), cpu_s()
    seconds = sum(one(path) for path in paths)
    return {
        "files": len(paths),
        "audio_s": seconds,
        "elapsed_s": time.perf_counter() - start,
        "cpu_s": cpu_s() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    folder, *numbers = sys.argv[1:]
    sys.stdout.write(json.dumps(main(Path(folder), *map(int, numbers))) + "\n")
