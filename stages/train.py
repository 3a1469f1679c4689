"""train: fit on each fold's train list, select by validation macro-F1; a killed run resumes
from ``--resume`` (finished folds kept); more than one process reruns it under torchrun."""

import dataclasses
import os
from pathlib import Path

from audioclf.cli import parser, run, stack_imports

with stack_imports():  # a broken torch/torchaudio install: one line naming the fix
    from audioclf.config import load_params
    from audioclf.data.split import read_folds
    from audioclf.features.table import FeatureTable
    from audioclf.io import read_json, repo_root, write_json
    from audioclf.tracking import changed_params, resolve_store
    from audioclf.training.distributed import process_group
    from audioclf.training.launch import worker_command
    from audioclf.training.stage import FoldPaths, train_folds, training_runs


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--features", required=True, help="the feature table")
    ap.add_argument("--split", type=Path, required=True, help="folder of fold_<n>/{train,val}.csv")
    ap.add_argument("--models", type=Path, required=True, help="folder for fold_<n>/best.pt")
    ap.add_argument("--resume", type=Path, required=True, help="folder for fold_<n>/last.pt")
    ap.add_argument("--curves", type=Path, required=True, help="folder for fold_<n>.csv")
    ap.add_argument("--summary", required=True, help="best epochs, validation scores (DVC metrics)")
    ap.add_argument("--leakage", required=True, help="the audit's report (its findings: run tags)")
    args = ap.parse_args(argv)
    root = repo_root()
    params = load_params(args.params).located(root)
    workers = worker_command(params.train, __file__, argv)
    if workers:  # this process becomes torchrun; its workers rerun this script
        os.execve(workers[0][0], *workers)
    spec, table = params.train_spec(), FeatureTable(args.features)
    store, leakage = resolve_store(root), read_json(args.leakage)
    runs = training_runs(store, params.dataset, spec, table, params.split, leakage)
    exp_name = os.environ.get("DVC_EXP_NAME", "workspace")  # set by dvc exp run
    runs = dataclasses.replace(runs, exp_name=exp_name, changed=changed_params(args.params))
    folds, paths = read_folds(args.split), FoldPaths(args.models, args.resume, args.curves)
    with process_group(params.train) as ranks:
        summary = train_folds(spec, table, folds, paths, runs, ranks)
    if ranks.writer:
        write_json(summary, args.summary)
    return summary


if __name__ == "__main__":
    run(main)
