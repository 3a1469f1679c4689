"""features: log-mel or MFCC segments of every decodable file in the manifest, from the shared store."""
import logging
from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import load_params
from audioclf.data.manifest import read_manifest
from audioclf.features.extract import CoverageError, extract_features
from audioclf.io import project_path, write_json

log = logging.getLogger("audioclf.stages.features")


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True, help="the feature table folder")
    ap.add_argument("--report", required=True, help="coverage and skipped files (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    manifest = Path(args.manifest)
    try:
        report = extract_features(read_manifest(manifest), manifest.parent, params.features, Path(args.out),
                                  store_dir=project_path(params.features.store_dir))
    except CoverageError as exc:
        write_json(exc.report, args.report)  # the reasons stay visible; no table is published
        raise
    # store hits depend on what this machine computed before, not on the inputs: logged, not reported
    computed, reused = report.pop("computed"), report.pop("reused")
    write_json(report, args.report)
    log.info("features: %d/%d files (%.1f%%), %d segments (%d files computed, %d from the store), %d skipped",
             report["decoded"], report["files"], 100 * report["coverage"], report["segments"], computed, reused,
             len(report["failed"]))
    return report


if __name__ == "__main__":
    run(main)
