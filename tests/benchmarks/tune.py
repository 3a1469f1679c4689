"""What an ``audioclf tune`` study found, and how fast: the best score against the trial count,
the trials by state, the wall time from the first trial's start to the last one's end, and the
epochs pruning saved.

    python tests/benchmarks/tune.py --study <name>     # storage: data/tune/optuna.db
    python tests/benchmarks/tune.py --study <name> --storage postgresql://...
"""

import argparse
from collections import Counter

import optuna


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", default="sqlite:///data/tune/optuna.db")
    args = ap.parse_args()
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    best = None
    print("trial  state     value   best so far  epochs  seconds  params")
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE and (
            best is None or sign * t.value > sign * best
        ):
            best = t.value
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0
        )
        value = f"{t.value:.4f}" if t.value is not None else "-"
        shown = f"{best:.4f}" if best is not None else "-"
        print(
            f"{t.number:5d}  {t.state.name:8s}  {value:6s}  {shown:11s}  "
            f"{len(t.intermediate_values):6d}  {seconds:7.0f}  {t.params}"
        )
    done = [t for t in trials if t.datetime_complete]
    wall = (
        max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    ).total_seconds()
    states = Counter(t.state.name for t in trials)
    print(f"\nstates: {dict(states)}; wall {wall / 60:.1f} min from first start to last end")
    full = max((len(t.intermediate_values) for t in trials), default=0)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    saved = sum(full - len(t.intermediate_values) for t in pruned)
    print(
        f"pruned: {len(pruned)} trial(s), stopped after {[len(t.intermediate_values) for t in pruned]} "
        f"epochs; {saved} epochs not trained (the longest trial ran {full})"
    )
    print(f"best: trial {study.best_trial.number}, {study.best_value:.4f}, {study.best_params}")


if __name__ == "__main__":
    main()
