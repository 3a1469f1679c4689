"""audit: fail the pipeline if any fold leaks (shared groups, duplicate or near-duplicate audio)."""
import logging
from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import load_params
from audioclf.data.audit import audit_folds, refuse_on_violations
from audioclf.data.split import read_folds
from audioclf.io import write_json

log = logging.getLogger("audioclf.stages.audit")


def main(argv=None) -> dict:
    ap = parser(__doc__)
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
    refuse_on_violations(report, args.report)
    counts = {name: check["count"] for name, check in report["checks"].items()}
    log.info("audit: %d files, %d fold(s), violations %s%s", report["files"], report["folds"], counts,
             " (LEAKY split: reported, not failed)" if params.split.leaky else "")
    return report


if __name__ == "__main__":
    run(main)
