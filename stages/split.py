"""split: grouped, stratified train/val/test lists, one set per fold (holdout: one fold)."""
import argparse
from pathlib import Path

from audioclf.config import load_params
from audioclf.io import write_json
from audioclf.manifest import read_manifest
from audioclf.split import make_folds, split_counts, write_folds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
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
    report = {"strategy": cfg.strategy, "leaky": cfg.leaky, "folds": [split_counts(fold) for fold in folds]}
    write_json(report, args.report)
    print(f"split: {cfg.strategy}, {len(folds)} fold(s); fold 0: {report['folds'][0]['clips']} clips"
          + (" (LEAKY: groups ignored)" if cfg.leaky else ""))
    return report


if __name__ == "__main__":
    main()
