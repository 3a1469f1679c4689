"""features: log-mel or MFCC segments of every decodable file in the manifest, from the shared store."""

from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import load_params
from audioclf.data.manifest import read_dropped, read_manifest
from audioclf.features.extract import CoverageError, extract_features, reproducible
from audioclf.io import project_path, write_json


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="the feature table folder")
    ap.add_argument("--report", required=True, help="coverage and skipped files (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    cfg, store = params.features, project_path(params.features.store_dir)
    entries, dropped = (
        read_manifest(args.manifest),
        read_dropped(args.manifest),
    )  # left out at download
    try:
        report = extract_features(
            entries, args.manifest.parent, cfg, args.out, store_dir=store, dropped=dropped
        )
    except CoverageError as exc:
        write_json(exc.report, args.report)  # the reasons stay visible; no table is published
        raise
    write_json(reproducible(report), args.report)
    return report


if __name__ == "__main__":
    run(main)
