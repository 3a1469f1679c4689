"""evaluate: score each fold's best checkpoint on its test list, once; summarise over folds."""
import argparse
import contextlib
import csv
from pathlib import Path

import mlflow

from audioclf.buckets import training_counts
from audioclf.config import flatten, load_params
from audioclf.eval_plots import evaluation_figures
from audioclf.evaluate import evaluate_folds
from audioclf.features import FeatureStore
from audioclf.io import atomic_path, read_json, write_json
from audioclf.manifest import read_manifest
from audioclf.tracking import parent_run_id, start_run


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", required=True, help="folder of fold_<n>/best.pt")
    ap.add_argument("--features", required=True)
    ap.add_argument("--test", required=True, help="folder of fold_<n>.csv test lists")
    ap.add_argument("--split-report", required=True, help="per-class training counts per fold (JSON)")
    ap.add_argument("--metrics", required=True, help="headline metrics, buckets, intervals (JSON, DVC metrics)")
    ap.add_argument("--per-class", required=True, help="per-class precision/recall/F1 (JSON)")
    ap.add_argument("--predictions", required=True, help="per-file actual/predicted (CSV, DVC plots)")
    ap.add_argument("--confusion", required=True, help="confusion matrix (PNG)")
    ap.add_argument("--per-class-plot", required=True, help="per-class F1 against training count (PNG)")
    ap.add_argument("--reliability", required=True, help="reliability diagram (PNG)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    cfg = params.evaluate
    # folds come from the test lists: models/ persists and may hold folds of an earlier run
    names = [p.stem for p in sorted(Path(args.test).glob("fold_*.csv"), key=lambda p: int(p.stem[5:]))]
    if not names:
        raise FileNotFoundError(f"no fold_<n>.csv test lists in {args.test} (run: dvc repro split)")
    out = evaluate_folds([Path(args.models) / n / "best.pt" for n in names], FeatureStore(args.features),
                         [[e.path for e in read_manifest(Path(args.test) / f"{n}.csv")] for n in names],
                         batch_size=cfg.batch_size, n_boot=cfg.bootstrap, ci_level=cfg.ci_level, seed=params.seed,
                         train_counts=training_counts(read_json(args.split_report)), head=cfg.buckets.head,
                         tail=cfg.buckets.tail, ece_bins=cfg.ece_bins)
    summary = {**out["summary"], "leaky_split": params.split.leaky}
    write_json(summary, args.metrics)
    write_json(out["per_class"], args.per_class)
    with atomic_path(args.predictions) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["fold", "path", "actual", "predicted"])
        writer.writeheader()
        writer.writerows(out["predictions"])
    figures = evaluation_figures(out, confusion=args.confusion, per_class=args.per_class_plot,
                                 reliability=args.reliability, head=cfg.buckets.head, tail=cfg.buckets.tail,
                                 ece_bins=cfg.ece_bins)
    run_ids = [f["checkpoint"].get("mlflow_run_id") for f in out["folds"]]
    cv = len(names) > 1
    name, flat = f"{params.model}-{params.loss}", flatten(params.raw)
    parent_id = parent_run_id(run_ids[0]) if cv else run_ids[0]
    with start_run(params.dataset, run_name=name, params=flat, run_id=parent_id):
        for n, fold in enumerate(out["folds"]):
            child = start_run(params.dataset, run_name=f"{name}-fold{n}", run_id=run_ids[n], nested=True) \
                if cv else contextlib.nullcontext()
            with child:
                mlflow.log_metrics({f"test_{k}": fold["metrics"][k] for k in summary["test"]})
        mlflow.log_metrics({f"test_{k}": v for k, v in summary["test"].items()})
        mlflow.log_metrics({f"test_{k}_std": v for k, v in summary.get("test_std", {}).items()})
        mlflow.log_metrics({f"test_{b}_macro_f1": v["macro_f1"] for b, v in summary["buckets"].items()
                            if "macro_f1" in v})
        mlflow.log_metrics({f"test_{k}_ci_{side}": v[side] for k, v in summary["test_ci"].items()
                            for side in ("low", "high")})
        for path in (args.metrics, args.per_class, args.predictions, *figures):
            mlflow.log_artifact(str(path), "evaluation")
    test = summary["test"]
    print(f"evaluate: {len(names)} fold(s), test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}"
          + (f" ± {summary['test_std']['macro_f1']:.4f}" if cv else "") + f", mAP {test['macro_map']:.4f}")
    return summary


if __name__ == "__main__":
    main()
