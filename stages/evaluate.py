"""evaluate: score each fold's best checkpoint on its test list, once; summarise over folds."""
import logging
from dataclasses import fields
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

log = logging.getLogger("audioclf.stages.evaluate")


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--models", required=True, help="folder of fold_<n>/best.pt")
    ap.add_argument("--features", required=True, help="the feature table")
    ap.add_argument("--test", required=True, help="folder of fold_<n>.csv test lists")
    ap.add_argument("--split-report", required=True, help="per-class training counts per fold (JSON)")
    for output in fields(EvaluationPaths):               # the outputs, as named in dvc.yaml
        ap.add_argument(f"--{output.name.replace('_', '-')}", required=True, type=Path)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    names = fold_names(Path(args.test))      # from the test lists: models/ persists, may hold more folds
    out = evaluate_folds([Path(args.models) / n / "best.pt" for n in names], FeatureTable(args.features),
                         read_test_lists(Path(args.test), names), cfg=params.evaluate, seed=params.seed,
                         train_counts=training_counts(read_json(args.split_report)))
    paths = EvaluationPaths(**{output.name: getattr(args, output.name) for output in fields(EvaluationPaths)})
    files = write_outputs(out, paths, params.evaluate, leaky_split=params.split.leaky)
    log_evaluation(Runs(params.dataset, f"{params.model}-{params.loss}"), out, files)   # the training's runs
    test = out["summary"]["test"]
    log.info("evaluate: %d fold(s), test accuracy %.4f, macro-F1 %.4f, mAP %.4f", len(names), test["accuracy"],
             test["macro_f1"], test["macro_map"])
    return out["summary"]


if __name__ == "__main__":
    run(main)
