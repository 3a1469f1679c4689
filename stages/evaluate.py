"""evaluate: score each fold's best checkpoint on its test list, once; summarise over folds."""

from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import load_params
from audioclf.evaluation.folds import EvaluationPaths, evaluate_stage, log_evaluation, write_outputs
from audioclf.features.table import FeatureTable
from audioclf.io import read_json
from audioclf.tracking import Runs


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--models", type=Path, required=True, help="folder of fold_<n>/best.pt")
    ap.add_argument("--features", required=True, help="the feature table")
    ap.add_argument("--test", type=Path, required=True, help="folder of fold_<n>.csv test lists")
    ap.add_argument(
        "--split-report", required=True, help="per-class training counts per fold (JSON)"
    )
    ap.add_argument("--leakage", required=True, help="the audit's report: files to score without")
    EvaluationPaths.add_arguments(ap)  # the outputs, as named in dvc.yaml
    args = ap.parse_args(argv)
    params = load_params(args.params)
    out = evaluate_stage(
        args.models,
        FeatureTable(args.features),
        args.test,
        cfg=params.evaluate,
        seed=params.seed,
        split_report=read_json(args.split_report),
        leakage=read_json(args.leakage),
    )
    files = write_outputs(out, EvaluationPaths.from_args(args), params.evaluate, params.split.leaky)
    log_evaluation(Runs(params.dataset, f"{params.model}-{params.loss}"), out, files)  # logs it
    return out["summary"]


if __name__ == "__main__":
    run(main)
