"""evaluate: score each fold's best checkpoint on its test list, once; summarise over folds."""

from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import load_params
from audioclf.data.split import fold_names, read_test_lists
from audioclf.evaluation.buckets import training_counts
from audioclf.evaluation.evaluate import evaluate_folds
from audioclf.evaluation.folds import EvaluationPaths, log_evaluation, write_outputs
from audioclf.features.table import FeatureTable
from audioclf.io import read_json
from audioclf.tracking import Runs


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--models", type=Path, required=True, help="folder of fold_<n>/best.pt")
    ap.add_argument("--features", required=True, help="the feature table")
    ap.add_argument("--test", type=Path, required=True, help="folder of fold_<n>.csv test lists")
    ap.add_argument("--split-report", required=True, help="training counts per class (JSON)")
    EvaluationPaths.add_arguments(ap)  # the outputs, as named in dvc.yaml
    args = ap.parse_args(argv)
    params = load_params(args.params)
    names = fold_names(args.test)  # from the test lists: models/ persists, may hold more folds
    checkpoints, tests = (
        [args.models / n / "best.pt" for n in names],
        read_test_lists(args.test, names),
    )
    table, counts = FeatureTable(args.features), training_counts(read_json(args.split_report))
    out = evaluate_folds(
        checkpoints, table, tests, cfg=params.evaluate, seed=params.seed, train_counts=counts
    )
    files = write_outputs(out, EvaluationPaths.from_args(args), params.evaluate, params.split.leaky)
    log_evaluation(Runs(params.dataset, f"{params.model}-{params.loss}"), out, files)  # logs it
    return out["summary"]


if __name__ == "__main__":
    run(main)
