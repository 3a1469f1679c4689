"""train: fit the selected model on each fold's train list, select by validation macro-F1.

A killed training resumes from ``--resume`` when the stage is rerun with the same params;
finished folds of an interrupted cross-validation are not retrained.
"""
import logging
from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import flatten, load_params
from audioclf.data.split import read_folds
from audioclf.features.table import FeatureTable
from audioclf.io import write_json
from audioclf.tracking import Runs
from audioclf.training.folds import FoldPaths, train_folds

log = logging.getLogger("audioclf.stages.train")


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--features", required=True)
    ap.add_argument("--split", required=True, help="folder of fold_<n>/{train,val}.csv (no test lists)")
    ap.add_argument("--models", required=True, help="folder for fold_<n>/best.pt")
    ap.add_argument("--resume", required=True, help="folder for fold_<n>/last.pt, the resumable state")
    ap.add_argument("--curves", required=True, help="folder for per-epoch metrics fold_<n>.csv (DVC plots)")
    ap.add_argument("--summary", required=True, help="best epochs and validation scores (JSON, DVC metrics)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    spec, table = params.train_spec(), FeatureTable(args.features)
    # the run's params: all that shaped this training, its front-end included
    runs = Runs(params.dataset, f"{spec.model}-{spec.loss}", flatten({**spec.resolved(), "features": table.meta["frontend"]}),
                {"leaky_split": str(params.split.leaky).lower(), "split_strategy": params.split.strategy})
    summary = train_folds(spec, table, read_folds(Path(args.split)),
                          FoldPaths(Path(args.models), Path(args.resume), Path(args.curves)), runs)
    write_json(summary, args.summary)
    log.info("train: validation macro-F1 %.4f", summary["best_val_macro_f1"])
    return summary


if __name__ == "__main__":
    run(main)
