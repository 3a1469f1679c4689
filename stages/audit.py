"""audit: fail the pipeline if any fold leaks (shared groups, duplicate or near-duplicate audio)."""
import argparse
from pathlib import Path

from audioclf.audit import audit_folds, describe_violations
from audioclf.config import load_params
from audioclf.io import write_json
from audioclf.split import LeakageError, read_folds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--audio-root", required=True, help="folder the manifest paths are relative to")
    ap.add_argument("--split", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--report", required=True, help="leakage report (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    cfg = params.audit
    report = audit_folds(read_folds(Path(args.split), Path(args.test)), Path(args.audio_root),
                         near_level=cfg.near_duplicates, pretrained_ids=frozenset(cfg.pretrained_ids),
                         pretrained_level=cfg.pretrained_overlap, max_ber=cfg.max_ber, leaky=params.split.leaky)
    write_json(report, args.report)
    if not report["ok"]:
        raise LeakageError(f"leakage audit failed (details in {args.report}):\n{describe_violations(report)}")
    counts = {name: check["count"] for name, check in report["checks"].items()}
    print(f"audit: {report['files']} files, {report['folds']} fold(s), violations {counts}"
          + (" (LEAKY split: reported, not failed)" if params.split.leaky else ""))
    return report


if __name__ == "__main__":
    main()
