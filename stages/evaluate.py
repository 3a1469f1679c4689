"""evaluate: score each fold's best checkpoint on its test list, once; summarise over folds."""

import dataclasses
import os
from pathlib import Path

from audioclf.cli import parser, run, stack_imports

with stack_imports():  # a broken torch/torchaudio install: one line naming the fix
    from audioclf.config import load_params
    from audioclf.evaluation import evaluate
    from audioclf.io import repo_root
    from audioclf.tracking import Runs, resolve_store


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--models", type=Path, required=True, help="folder of fold_<n>/best.pt")
    ap.add_argument("--features", type=Path, required=True, help="the feature table")
    ap.add_argument("--test", type=Path, required=True, help="folder of fold_<n>.csv test lists")
    ap.add_argument("--split-report", type=Path, required=True, help="training counts (JSON)")
    ap.add_argument("--leakage", type=Path, required=True, help="files to score without (JSON)")
    evaluate.EvaluationPaths.add_arguments(ap)  # the outputs, as named in dvc.yaml
    args = ap.parse_args(argv)
    params = load_params(args.params)
    out = evaluate.evaluate_stage(
        args.models,
        args.features,
        args.test,
        args.split_report,
        args.leakage,
        cfg=params.evaluate,
        seed=params.seed,
    )
    paths = evaluate.EvaluationPaths.from_args(args)
    files = evaluate.write_outputs(out, paths, params.evaluate, params.split.leaky)
    exp = os.environ.get("DVC_EXP_NAME", "workspace")  # set by dvc exp run
    runs = Runs(resolve_store(repo_root()), params.dataset, f"{params.model}-{params.loss}")
    evaluate.log_evaluation(dataclasses.replace(runs, exp_name=exp), out, files)
    return out["summary"]


if __name__ == "__main__":
    run(main)
