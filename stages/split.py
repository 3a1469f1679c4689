"""split: grouped, stratified train/val/test lists, one set per fold (holdout: one fold)."""

from pathlib import Path

from audioclf.cli import parser, run, stack_imports

with stack_imports():  # a broken torch/torchaudio install: one line naming the fix
    from audioclf.config import load_params
    from audioclf.data.duplicates import merge_duplicate_groups
    from audioclf.data.manifest import read_manifest
    from audioclf.data.split import split_folds, split_report, write_folds
    from audioclf.io import write_json


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for fold_<n>/{train,val}.csv")
    ap.add_argument("--test-out", type=Path, required=True, help="folder for the test lists")
    ap.add_argument("--report", required=True, help="per-class counts per split and fold (JSON)")
    args = ap.parse_args(argv)
    params, merged = load_params(args.params), []
    entries = read_manifest(args.manifest)
    if params.split.merge_duplicates:  # copies get one group, so they land on one side
        audit = params.audit
        entries, merged = merge_duplicate_groups(
            entries, args.manifest.parent, max_ber=audit.max_ber, max_seconds=audit.max_file_seconds
        )
    folds = split_folds(entries, params.split, seed=params.seed)
    write_folds(folds, args.out, args.test_out)
    report = {**split_report(folds, params.split), "merged_groups": merged}
    write_json(report, args.report)
    return report


if __name__ == "__main__":
    run(main)
