"""split: grouped, stratified train/val/test lists (each in the manifest schema)."""
import argparse
from pathlib import Path

from audioclf.config import load_params
from audioclf.io import write_json
from audioclf.manifest import read_manifest, write_manifest
from audioclf.split import grouped_split, split_counts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True, help="folder for train.csv, val.csv, test.csv")
    ap.add_argument("--report", required=True, help="per-class counts per split (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    cfg = params.split
    splits = grouped_split(read_manifest(args.manifest), {"train": cfg.train, "val": cfg.val, "test": cfg.test},
                           params.seed, leaky=cfg.leaky)
    for name, rows in splits.items():
        write_manifest(rows, Path(args.out) / f"{name}.csv")
    report = {**split_counts(splits), "leaky": cfg.leaky}
    write_json(report, args.report)
    print(f"split: {report['clips']} clips, {report['groups']} groups" + (" (LEAKY: groups ignored)" if cfg.leaky else ""))
    return report


if __name__ == "__main__":
    main()
