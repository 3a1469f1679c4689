"""train: fit the selected model on the train split, select by validation macro-F1."""
import argparse
import csv
import tempfile
from pathlib import Path

import mlflow

from audioclf.config import flatten, load_params
from audioclf.features import FeatureStore
from audioclf.io import atomic_path, write_json
from audioclf.manifest import read_manifest
from audioclf.plots import plot_curves
from audioclf.tracking import start_run
from audioclf.train import train


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", required=True)
    ap.add_argument("--train", required=True, help="train split list")
    ap.add_argument("--val", required=True, help="validation split list")
    ap.add_argument("--checkpoint", required=True, help="best checkpoint path")
    ap.add_argument("--curves", required=True, help="per-epoch metrics (CSV, DVC plots)")
    ap.add_argument("--summary", required=True, help="best epoch and validation score (JSON, DVC metrics)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    store = FeatureStore(args.features)
    train_paths = [e.path for e in read_manifest(args.train)]
    val_paths = [e.path for e in read_manifest(args.val)]
    with start_run(params.dataset, run_name=f"{params.model}-{params.loss}", params=flatten(params.raw)) as run:
        mlflow.set_tag("leaky_split", str(params.split.leaky).lower())
        result = train(params, store, train_paths, val_paths, Path(args.checkpoint),
                       log_metrics=lambda m, step: mlflow.log_metrics(m, step=step), run_id=run.info.run_id)
        history = result.pop("history")
        with atomic_path(args.curves) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        write_json(result, args.summary)
        mlflow.log_metrics({k: result[k] for k in ("best_val_macro_f1", "best_epoch", "data_wait_share")})
        mlflow.log_artifact(args.checkpoint, "checkpoints")
        mlflow.log_artifact(args.curves, "plots")
        with tempfile.TemporaryDirectory() as tmp:
            plot_curves(history, Path(tmp) / "train_curves.png")
            mlflow.log_artifact(str(Path(tmp) / "train_curves.png"), "plots")
    print(f"train: best epoch {result['best_epoch']}, val macro-F1 {result['best_val_macro_f1']:.4f}, "
          f"{result['data_wait_share']:.1%} of training time waiting for data")
    return result


if __name__ == "__main__":
    main()
