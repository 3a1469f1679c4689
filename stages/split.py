"""split: grouped, stratified train/val/test lists, one set per fold (holdout: one fold)."""
import logging
from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import load_params
from audioclf.data.manifest import read_manifest
from audioclf.data.split import make_folds, split_report, write_folds
from audioclf.io import write_json

log = logging.getLogger("audioclf.stages.split")


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True, help="folder for fold_<n>/{train,val}.csv")
    ap.add_argument("--test-out", required=True, help="folder for fold_<n>.csv test lists (read by evaluate only)")
    ap.add_argument("--report", required=True, help="per-class counts per split and fold (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    cfg = params.split
    folds = make_folds(read_manifest(args.manifest), strategy=cfg.strategy, seed=params.seed, k=cfg.k,
                       fractions={"train": cfg.train, "val": cfg.val, "test": cfg.test},
                       fold_column=cfg.fold_column, leaky=cfg.leaky)
    write_folds(folds, Path(args.out), Path(args.test_out))
    report = split_report(folds, cfg)
    write_json(report, args.report)
    log.info("split: %s, %d fold(s); fold 0: %s clips%s", cfg.strategy, len(folds), report["folds"][0]["clips"],
             " (LEAKY: groups ignored)" if cfg.leaky else "")
    return report


if __name__ == "__main__":
    run(main)
