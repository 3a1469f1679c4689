"""train: fit the selected model on each fold's train list, select by validation macro-F1.

A killed training resumes from ``--resume`` when the stage is rerun with the same params;
finished folds of an interrupted cross-validation are not retrained.
"""
import argparse
import contextlib
import csv
import shutil
import tempfile
from pathlib import Path

import mlflow

from audioclf.aggregate import fold_summary
from audioclf.config import flatten, load_params
from audioclf.features import FeatureStore
from audioclf.io import atomic_path, write_json
from audioclf.plots import plot_curves
from audioclf.resume import find_resumable, plan_folds
from audioclf.split import read_folds
from audioclf.tracking import parent_run_id, start_run
from audioclf.train import train


def write_curves(history: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", required=True)
    ap.add_argument("--split", required=True, help="folder of fold_<n>/{train,val}.csv (no test lists)")
    ap.add_argument("--models", required=True, help="folder for fold_<n>/best.pt")
    ap.add_argument("--resume", required=True, help="folder for fold_<n>/last.pt, the resumable state")
    ap.add_argument("--curves", required=True, help="folder for per-epoch metrics fold_<n>.csv (DVC plots)")
    ap.add_argument("--summary", required=True, help="best epochs and validation scores (JSON, DVC metrics)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    store = FeatureStore(args.features)
    folds = read_folds(Path(args.split))
    models, resume, curves = Path(args.models), Path(args.resume), Path(args.curves)
    for stale in [*models.glob("fold_*"), *resume.glob("fold_*"), *curves.glob("fold_*")]:
        if int(stale.name.split("_")[1].split(".")[0]) >= len(folds):  # left by a run with more folds
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    found = [find_resumable(resume / f"fold_{n}/last.pt", models / f"fold_{n}/best.pt", params,
                            [e.path for e in f["train"]], [e.path for e in f["val"]], store.labels)
             for n, f in enumerate(folds)]
    states = plan_folds([state for state, _ in found])
    for n, ((_, note), state) in enumerate(zip(found, states)):
        print(f"train: fold {n}: {note if state is not None or 'fresh' in note else 'starting fresh (rerun)'}")
    cv = len(folds) > 1
    flat, name = flatten(params.raw), f"{params.model}-{params.loss}"
    tags = {"leaky_split": str(params.split.leaky).lower(), "split_strategy": params.split.strategy}
    run_ids = [s["mlflow_run_id"] if s else None for s in states]
    parent_id = next((parent_run_id(r) for r in run_ids if r), None) if cv else run_ids[0]
    results = []
    with start_run(params.dataset, run_name=name, params=flat, tags=tags, run_id=parent_id) as parent:
        for n, (fold, state) in enumerate(zip(folds, states)):
            child = start_run(params.dataset, run_name=f"{name}-fold{n}", params=flat, nested=True, run_id=run_ids[n],
                              tags={**tags, "fold": str(n)}) if cv else contextlib.nullcontext(parent)
            with child as run:
                checkpoint = models / f"fold_{n}" / "best.pt"
                result = train(params, store, [e.path for e in fold["train"]], [e.path for e in fold["val"]],
                               checkpoint, log_metrics=lambda m, step: mlflow.log_metrics(m, step=step),
                               run_id=run.info.run_id, last=resume / f"fold_{n}" / "last.pt", resume=state)
                history = result.pop("history")
                mlflow.set_tags({"device": result.pop("device"), "resumed_from_epoch": result.pop("resumed_from_epoch")})
                # a timing: logged, but kept out of reports/train.json, which must be reproducible
                wait = result.pop("data_wait_share")
                mlflow.log_metric("data_wait_share", wait)
                print(f"train: fold {n}: {wait:.1%} of training time spent waiting for data")
                write_curves(history, curves / f"fold_{n}.csv")
                mlflow.log_metrics({"best_val_macro_f1": result["best_val_macro_f1"], "best_epoch": result["best_epoch"]})
                mlflow.log_artifact(str(checkpoint), "checkpoints")
                with tempfile.TemporaryDirectory() as tmp:
                    plot_curves(history, Path(tmp) / f"train_curves_fold_{n}.png")
                    mlflow.log_artifacts(tmp, "plots")
                results.append(result)
        summary = results[0] if not cv else {
            "best_val_macro_f1": fold_summary([{"v": r["best_val_macro_f1"]} for r in results])["v"]["mean"],
            "n_parameters": results[0]["n_parameters"], "folds": {str(n): r for n, r in enumerate(results)}}
        if cv:
            mlflow.log_metric("best_val_macro_f1_mean", summary["best_val_macro_f1"])
    write_json(summary, args.summary)
    print(f"train: {len(folds)} fold(s), validation macro-F1 {summary['best_val_macro_f1']:.4f}")
    return summary


if __name__ == "__main__":
    main()
