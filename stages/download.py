"""download: fetch or generate the dataset's audio and write its manifest."""
import logging
from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import load_params
from audioclf.data.datasets import DATASETS
from audioclf.data.manifest import write_manifest
from audioclf.io import atomic_path

log = logging.getLogger("audioclf.stages.download")


def main(argv=None) -> Path:
    ap = parser(__doc__)
    ap.add_argument("--out", required=True, help="folder for the audio and manifest.csv")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        entries = DATASETS[params.dataset](params.data, params.seed, tmp)
        write_manifest(entries, tmp / "manifest.csv")
    log.info("download: %d files of dataset '%s' -> %s", len(entries), params.dataset, args.out)
    return Path(args.out) / "manifest.csv"


if __name__ == "__main__":
    run(main)
