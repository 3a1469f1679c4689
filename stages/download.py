"""download: fetch or generate the dataset's audio and write its manifest."""
import argparse
from pathlib import Path

from audioclf.config import load_params
from audioclf.datasets import DATASETS
from audioclf.io import atomic_path
from audioclf.manifest import write_manifest


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True, help="folder for the audio and manifest.csv")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        entries = DATASETS[params.dataset](params.data, params.seed, tmp)
        write_manifest(entries, tmp / "manifest.csv")
    print(f"download: {len(entries)} files of dataset '{params.dataset}' -> {args.out}")
    return Path(args.out) / "manifest.csv"


if __name__ == "__main__":
    main()
