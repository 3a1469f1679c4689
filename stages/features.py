"""features: log-mel or MFCC segments of every decodable file in the manifest, from the shared store."""
import argparse
from pathlib import Path

from audioclf.config import load_params
from audioclf.extract import CoverageError, extract_features
from audioclf.frontends import MKL_STATUS
from audioclf.io import project_path, write_json
from audioclf.manifest import read_manifest


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True, help="cache folder")
    ap.add_argument("--report", required=True, help="coverage and skipped files (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    manifest = Path(args.manifest)
    try:
        report = extract_features(read_manifest(manifest), manifest.parent, params.features, Path(args.out),
                                  store_dir=project_path(params.features.store_dir))
    except CoverageError as exc:
        write_json(exc.report, args.report)  # the reasons stay visible; no cache is published
        raise
    # store hits depend on what this machine computed before, not on the inputs: printed, not reported
    computed, reused = report.pop("computed"), report.pop("reused")
    write_json(report, args.report)
    print(f"features: {report['decoded']}/{report['files']} files ({report['coverage']:.1%}), "
          f"{report['segments']} segments ({computed} files computed, {reused} from the store), "
          f"{len(report['failed'])} skipped; MKL vendor check {MKL_STATUS}")
    return report


if __name__ == "__main__":
    main()
