"""evaluate: score the best checkpoint on the test split, once."""
import argparse
import csv
from pathlib import Path

import mlflow

from audioclf.config import flatten, load_params
from audioclf.evaluate import evaluate
from audioclf.features import FeatureStore
from audioclf.io import atomic_path, write_json
from audioclf.manifest import read_manifest
from audioclf.plots import plot_confusion
from audioclf.tracking import start_run


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--test", required=True, help="test split list")
    ap.add_argument("--metrics", required=True, help="headline metrics (JSON, DVC metrics)")
    ap.add_argument("--per-class", required=True, help="per-class precision/recall/F1 (JSON)")
    ap.add_argument("--predictions", required=True, help="per-file actual/predicted (CSV, DVC plots)")
    ap.add_argument("--confusion", required=True, help="confusion matrix (PNG)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    out = evaluate(Path(args.checkpoint), FeatureStore(args.features),
                   [e.path for e in read_manifest(args.test)], params.evaluate.batch_size)
    metrics = out["metrics"]
    per_class = metrics.pop("per_class")
    headline = {"test": metrics, "leaky_split": params.split.leaky}
    write_json(headline, args.metrics)
    write_json(per_class, args.per_class)
    with atomic_path(args.predictions) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "actual", "predicted"])
        writer.writeheader()
        writer.writerows(out["predictions"])
    plot_confusion(out["y_true"], out["probs"].argmax(axis=1), out["labels"], Path(args.confusion))
    with start_run(params.dataset, run_name=f"{params.model}-{params.loss}", params=flatten(params.raw),
                   run_id=out["checkpoint"].get("mlflow_run_id")):
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        for path in (args.metrics, args.per_class, args.predictions, args.confusion):
            mlflow.log_artifact(path, "evaluation")
    print(f"evaluate: test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
          f"mAP {metrics['macro_map']:.4f} on {metrics['n']} files")
    return headline


if __name__ == "__main__":
    main()
