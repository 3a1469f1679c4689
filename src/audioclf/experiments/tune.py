"""Search params with Optuna, scored on the validation folds only; the winner becomes a DVC experiment.

    audioclf tune                          # tune.yaml: its space, its trials
    audioclf tune --trials 40 --timeout 3600
    audioclf tune --apply                  # then the best trial as a DVC experiment, scored on test
    audioclf tune --storage postgresql://user@db/optuna    # one worker of a study shared by machines

Each trial sets the keys of tune.yaml's ``space``, trains on every fold of ``data/split`` as the
train stage does and scores the validation files: the test lists (``data/test``) are never opened. Its
per-epoch validation score goes to the pruner, which stops hopeless trials. The study lives in
an Optuna database (``storage``; SQLite under data/tune by default): run the same command
again to resume a killed study, or on another machine against a server database to add a worker.
Every trial is a child run of the study's MLflow run, which holds the best trial, the trials
table, the parameter importances and the optimisation history. ``--apply`` runs the best trial's
params through the DVC queue (experiment ``<study>``): the test set is scored once, by the
evaluate stage; ``audioclf compare workspace <study>`` pairs it with the baseline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shlex
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import mlflow
import optuna
import yaml
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from audioclf.cli import parser
from audioclf.config import load_params
from audioclf.config.heads import HEAD_CONFIGS
from audioclf.config.params import Params, parse_params
from audioclf.config.tune import TuneConfig, load_tune, set_keys
from audioclf.data.split import read_folds
from audioclf.errors import MissingInputError, UserError
from audioclf.experiments.ladder import Dvc, Phase, execute, plan
from audioclf.features.table import FeatureTable
from audioclf.io import read_json, repo_root
from audioclf.tracking import Store, exclusive, log_curves, resolve_store, start_run, ui_hint
from audioclf.training.classical import train_classical
from audioclf.training.loop import train
from audioclf.training.stage import training_runs

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PARENT_ATTR = "mlflow_run_id"  # the study's MLflow run, in the study's user attributes
PARENT_WAIT_S = 60.0  # a joining worker waits this long for the creator to name the MLflow run
SQLITE_BUSY_S = 60.0  # a SQLite write waits this long for another worker's (a heartbeat, a trial)
# failures a trial's params can cause (a diverging rate, a refused combination): that trial fails
TRIAL_ERRORS = (UserError, FloatingPointError)


class Search:
    """One worker of a study: the base params, the feature table and folds every trial reads.

    Args:
        params: the workspace params.
        cfg: the search (``tune.yaml``, checked against ``params``: :func:`load_tune`).
        table: the feature table (``data/features``).
        folds: the train and validation lists of each fold (``data/split``; no test lists).
        store: where the MLflow runs go.
        leakage: the audit's report (its findings become run tags, as in training).
        root: the repository (a trial's relative paths are resolved against it).
        exp_name: the DVC experiment the search runs in (``workspace`` outside one).
    """

    def __init__(
        self,
        params: Params,
        cfg: TuneConfig,
        table: FeatureTable,
        folds: list[dict],
        store: Store,
        leakage: dict,
        root: Path,
        exp_name: str = "workspace",
    ):
        self.params, self.cfg = params, cfg
        self.space = cfg.dimensions()
        self.table, self.store, self.leakage, self.exp_name = table, store, leakage, exp_name
        self.root = root
        self.files = [([e.path for e in f["train"]], [e.path for e in f["val"]]) for f in folds]

    def default_name(self) -> str:
        """``<dataset>-<model>-<digest>``: the digest of what the trials depend on (the base
        params, the space, the metric, the front-end and the folds), so rerunning the command
        resumes the study and changing any of them starts another."""
        keys = ("model", "loss", "seed", "model_params", "loss_params", "train", "augment")
        basis = {
            "params": {k: self.params.raw.get(k) for k in keys},
            "space": self.cfg.space,
            "metric": self.cfg.metric,
            "frontend": self.table.frontend_key,
            "folds": self.files,
        }
        digest = hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode())
        return f"{self.params.dataset}-{self.params.model}-{digest.hexdigest()[:8]}"

    def storage(self, url: str) -> RDBStorage:
        """The study's database, with heartbeats: a trial whose worker died is failed once it
        has been silent for two heartbeats, its MLflow run marked killed, and it is run again."""
        with warnings.catch_warnings():  # heartbeats and retries: "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=self.cfg.retries)
            return rdb_storage(
                url,
                heartbeat_interval=self.cfg.heartbeat_s,
                grace_period=2 * self.cfg.heartbeat_s,
                heartbeat_stale_trial_callback=functools.partial(self._stale, retry),
            )

    def _stale(self, retry, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """A trial whose worker died: its MLflow run marked killed, the trial queued again."""
        run_id = trial.user_attrs.get(PARENT_ATTR)
        if run_id:
            self.store.client().set_terminated(run_id, "KILLED")
        log.warning("tune: trial %d stopped with its worker; running it again", trial.number)
        retry(study, trial)

    def open(self, name: str, url: str) -> tuple[optuna.Study, str]:
        """The study ``name`` in ``url``, created with its MLflow run if new, else joined.

        Returns:
            The study and its MLflow run's id.
        """
        storage = self.storage(url)
        seed = self.params.seed if self.cfg.seed is None else self.cfg.seed
        settings = {"storage": storage, "study_name": name, "pruner": self._pruner()}
        try:  # creating a study is atomic in the database: one worker creates, the others join
            study = optuna.create_study(
                direction=self.cfg.direction, sampler=self._sampler(seed), **settings
            )
        except optuna.exceptions.DuplicatedStudyError:
            # a joining worker draws its own random stream: the creator's seed would repeat its draws
            study = optuna.load_study(sampler=self._sampler(None), **settings)
            self._check_joined(study)
            return study, self._parent_of(study)
        study.set_user_attr("space", self.cfg.space)
        study.set_user_attr("metric", self.cfg.metric)
        with self._parent(name, url) as run:
            study.set_user_attr(PARENT_ATTR, run.info.run_id)
        return study, run.info.run_id

    def _check_joined(self, study: optuna.Study) -> None:
        """A worker joining a study must search the same space for the same metric."""
        attrs = study.user_attrs
        for key, ours in (("space", self.cfg.space), ("metric", self.cfg.metric)):
            if key in attrs and json.dumps(attrs[key], sort_keys=True, default=str) != json.dumps(
                ours, sort_keys=True, default=str
            ):
                raise UserError(
                    f"tune: study {study.study_name!r} was started with another tune.{key} "
                    f"({attrs[key]!r}); name another study (--study) or use the same params"
                )

    def _parent_of(self, study: optuna.Study) -> str:
        """The MLflow run the study's creator made (it may still be making it)."""
        deadline = time.monotonic() + PARENT_WAIT_S
        while PARENT_ATTR not in study.user_attrs:
            if time.monotonic() > deadline:  # the creator died before naming it: name one
                with self._parent(study.study_name, "") as run:
                    study.set_user_attr(PARENT_ATTR, run.info.run_id)
                break
            time.sleep(0.5)
        return study.user_attrs[PARENT_ATTR]

    def _parent(self, name: str, url: str, run_id: str | None = None):
        tags = {"optuna_study": name, "tune_metric": self.cfg.metric}
        if url:
            tags["optuna_storage"] = make_url(url).render_as_string(hide_password=True)
        return start_run(
            self.store,
            self.params.dataset,
            run_name=f"tune-{name}",
            params={f"space.{k}": json.dumps(v) for k, v in self.cfg.space.items()},
            tags=tags,
            run_id=run_id,
            exp_name=self.exp_name,
        )

    def _sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        if self.cfg.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def _pruner(self) -> optuna.pruners.BasePruner:
        if self.cfg.pruner == "median":  # not before 5 finished trials, nor in the first sixth
            warmup = self.params.train.epochs // 6  # of the epochs (the early scores are noisy)
            return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
        if self.cfg.pruner == "halving":
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.NopPruner()

    def optimize(
        self, study: optuna.Study, parent_id: str, trials: int, timeout_s: float | None
    ) -> int:
        """Run trials until the study holds ``trials`` finished ones (counted over every worker)
        or ``timeout_s`` passes; returns how many this worker ran."""
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        if done >= trials:
            log.info("tune: study %s already holds %d finished trials", study.study_name, done)
            return 0
        ran: list[int] = []  # this worker's trials (the others' land in the same study)

        def objective(trial: optuna.Trial) -> float:
            ran.append(trial.number)
            return self.objective(trial, trials)

        with self._parent(study.study_name, "", run_id=parent_id):
            study.optimize(
                objective,
                n_trials=trials - done,
                timeout=timeout_s,
                catch=TRIAL_ERRORS,
                callbacks=[MaxTrialsCallback(trials, states=FINISHED)],
                gc_after_trial=True,
            )
            record_study(study)
        return len(ran)

    def objective(self, trial: optuna.Trial, budget: int) -> float:
        """Train the trial's params on every fold; its score is the mean of each fold's
        tune.yaml's ``metric`` at the epoch training selected (the best validation macro-F1)."""
        values = {dim.key: dim.suggest(trial) for dim in self.space}
        # a rerun of a trial whose worker died inherits its user attributes (the retry callback)
        retried = trial.user_attrs.get("first_trial")
        if retried is None:
            trial.set_user_attr("first_trial", trial.number)
        params = parse_params(set_keys(self.params.raw, values)).located(self.root)
        spec = params.train_spec()
        runs = training_runs(
            self.store, params.dataset, spec, self.table, params.split, self.leakage
        )
        tags = {
            **runs.tags,
            "optuna_study": trial.study.study_name,
            "optuna_trial": str(trial.number),
            **({"optuna_retry_of": str(retried)} if retried is not None else {}),
        }
        started = time.monotonic()
        with start_run(
            self.store,
            params.dataset,
            run_name=f"trial-{trial.number}",
            params=runs.params,
            nested=True,
            tags=tags,
            exp_name=self.exp_name,
            changed={k: json.dumps(v) for k, v in values.items()},
        ) as run:
            trial.set_user_attr(PARENT_ATTR, run.info.run_id)
            try:
                value = self._train(trial, spec)
            except optuna.TrialPruned as pruned:
                mlflow.set_tags({"trial_state": "PRUNED", "mlflow.note.content": str(pruned)})
                outcome: Exception | None = pruned
            except TRIAL_ERRORS as exc:
                mlflow.set_tags({"trial_state": "FAIL", "mlflow.note.content": str(exc)})
                raise
            else:
                mlflow.set_tag("trial_state", "COMPLETE")
                mlflow.log_metric(f"tune_{self.cfg.metric}", value)
                outcome = None
        self._log_trial(trial, values, value if outcome is None else None, budget, started)
        if outcome is not None:
            raise outcome
        return value

    def _train(self, trial: optuna.Trial, spec) -> float:
        scores = []
        cv = len(self.files) > 1
        for n, (train_paths, val_paths) in enumerate(self.files):

            def on_epoch(metrics: dict[str, float], step: int, n: int = n) -> None:
                log_curves(metrics, step, f"_fold{n}" if cv else "")
                if n == 0 and self.cfg.metric in metrics:  # the first fold's curve is pruned on
                    trial.report(metrics[self.cfg.metric], step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(
                            f"pruned at epoch {step}: {self.cfg.metric} "
                            f"{metrics[self.cfg.metric]:.4f} falls behind the earlier trials at "
                            f"that epoch ({self.cfg.pruner} pruner)"
                        )

            fit = train_classical if spec.model in HEAD_CONFIGS else train
            with tempfile.TemporaryDirectory(prefix="audioclf-trial-") as tmp:
                result = fit(
                    spec,
                    self.table,
                    train_paths,
                    val_paths,
                    Path(tmp) / "best.pt",
                    log_metrics=on_epoch,
                    run_id=mlflow.active_run().info.run_id,
                    **({} if spec.model in HEAD_CONFIGS else {"fold": n}),
                )
            scores.append(selected(result, self.cfg.metric))
        return sum(scores) / len(scores)

    def _log_trial(
        self,
        trial: optuna.Trial,
        values: dict[str, Any],
        value: float | None,
        budget: int,
        started: float,
    ) -> None:
        study = trial.study
        finished = len(study.get_trials(deepcopy=False, states=FINISHED)) + 1
        try:
            best = study.best_trial
            best_text = f"best {best.value:.4f} (trial {best.number})"
        except ValueError:  # no trial has completed yet
            best_text = "no completed trial yet"
        if value is not None and (not best_text.startswith("best") or self._better(value, best)):
            best_text = f"best {value:.4f} (trial {trial.number})"
        outcome = "pruned" if value is None else f"{self.cfg.metric} {value:.4f}"
        log.info(
            "tune: trial %d (%d/%d): %s, %s, %.0f s; %s",
            trial.number,
            finished,
            budget,
            outcome,
            best_text,
            time.monotonic() - started,
            " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
            ),
        )

    def _better(self, value: float, best: optuna.trial.FrozenTrial) -> bool:
        return value > best.value if self.cfg.direction == "maximize" else value < best.value


def selected(result: dict, metric: str) -> float:
    """``metric`` at the epoch training selected (``best_epoch``; the best validation macro-F1)."""
    rows = [r for r in result["history"] if r.get("epoch") == result["best_epoch"]]
    value = rows[0][metric] if rows else result["best_val_macro_f1"]
    if not math.isfinite(value):
        raise FloatingPointError(f"{metric} is {value} at the selected epoch")
    return float(value)


def format_value(value: Any) -> str:
    """A value as ``dvc exp run -S`` and params.yaml read it back (YAML 1.1: a float keeps its
    dot, ``1.0e-05`` not ``1e-05``, which YAML reads as a string).

    >>> [format_value(v) for v in (1e-05, 0.0003, 32, None, "sqrt", True)]
    ['1.0e-05', '0.0003', '32', 'null', 'sqrt', 'true']
    """
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def overrides(values: dict[str, Any]) -> list[str]:
    """A trial's values as ``dvc exp run -S`` takes them.

    >>> overrides({"train.lr": 1e-05, "loss": "ce"})
    ['train.lr=1.0e-05', 'loss=ce']
    """
    return [f"{k}={format_value(v)}" for k, v in values.items()]


def record_study(study: optuna.Study) -> dict:
    """The study's state on its (active) MLflow run: the best trial as metric and tags, the
    trials table, the parameter importances (table and plot) and the optimisation history."""
    states = [t.state for t in study.trials]
    counts = {s.name.lower(): states.count(s) for s in TrialState if states.count(s)}
    mlflow.log_metrics({f"trials_{k}": v for k, v in counts.items()})
    summary: dict[str, Any] = {"study": study.study_name, "trials": counts}
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        summary.update(best_trial=best.number, best_value=best.value, best_params=best.params)
        mlflow.log_metric("best_value", best.value)
        mlflow.set_tags(
            {
                "best_trial": str(best.number),
                "best_params": " ".join(overrides(best.params)),
            }
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        study.trials_dataframe().to_csv(out / "trials.csv", index=False)
        summary["importance"] = _importance(study, complete, out)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        mlflow.log_artifacts(tmp, "tune")
    return summary


def _importance(
    study: optuna.Study, complete: list[optuna.trial.FrozenTrial], out: Path
) -> dict[str, float]:
    """Optuna's parameter importances and its plots of them and of the history, into ``out``."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    importance: dict[str, float] = {}
    figures = [("history.png", plots.plot_optimization_history)]
    distinct = {json.dumps(t.params, sort_keys=True, default=str) for t in complete}
    if len(distinct) >= 2:  # importances need trials that differ
        importance = optuna.importance.get_param_importances(study)
        (out / "importance.json").write_text(json.dumps(importance, indent=2))
        figures.append(("importance.png", plots.plot_param_importances))
    for name, plot in figures:
        with warnings.catch_warnings():  # Optuna's matplotlib plots are "experimental"
            warnings.simplefilter("ignore")
            axes = plot(study)
        axes.figure.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
    return importance


def apply(study: optuna.Study, raw: dict, root: Path, force: bool) -> dict:
    """Run the best trial's params as DVC experiment ``<study>`` (queued, then run: its evaluate
    stage scores the test set once); returns its result from ``dvc exp show``."""
    best = study.best_trial  # ValueError without a completed trial: the caller says so
    sets = tuple(overrides(best.params))
    name = study.study_name
    title = f"best of study {name}: trial {best.number}, {study.user_attrs.get('metric')} {best.value:.4f}"
    planned = plan(raw, [Phase(name, title, sets)], root=root)
    if planned[0].reason:
        raise UserError(f"tune --apply: cannot run {list(sets)}: {planned[0].reason}")
    log.info("tune: dvc exp run -n %s %s", name, " ".join(f"-S {o}" for o in sets))
    result = execute(planned, Dvc(root), force=force)[name]
    if "error" in result:
        raise UserError(f"tune --apply: experiment {name} failed: {result['error']}")
    test, ci = result["metrics"]["test"], result["metrics"].get("test_ci", {}).get("macro_f1", {})
    log.info(
        "tune: experiment %s: test macro-F1 %.4f [%.4f, %.4f]; against the workspace: "
        "audioclf compare workspace %s",
        name,
        test["macro_f1"],
        ci.get("low", math.nan),
        ci.get("high", math.nan),
        name,
    )
    return result


def main(argv: list[str]) -> dict:
    ap = parser(__doc__, prog="audioclf tune")
    add = ap.add_argument
    add(
        "--config", default="tune.yaml", help="the search's settings and space (default: tune.yaml)"
    )
    add(
        "--trials",
        type=int,
        help="the study's budget of finished trials (default: trials in tune.yaml)",
    )
    add(
        "--timeout",
        type=float,
        help="seconds after which no trial starts (default: timeout_s in tune.yaml)",
    )
    add(
        "--study", help="the study's name (default: <dataset>-<model>-<digest of what it searches>)"
    )
    add(
        "--storage",
        help="the study's database URL (default: storage in tune.yaml, else data/tune/optuna.db)",
    )
    add("--apply", action="store_true", help="then run the best trial as DVC experiment <study>")
    add("--force", action="store_true", help="with --apply: replace an experiment of that name")
    add("--features", default="data/features", help="the feature table (default: data/features)")
    add(
        "--split", default="data/split", help="the folds' train and val lists (default: data/split)"
    )
    add("--leakage", default="reports/leakage.json", help="the audit's report")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial comes from here
    root = repo_root()
    params = load_params(args.params).located(root)
    cfg = load_tune(args.config, params)
    trials = cfg.trials if args.trials is None else args.trials
    if trials < 1:
        ap.error(f"--trials must be >= 1, got {trials}")
    for what, path in (("features", args.features), ("split", args.split), ("audit", args.leakage)):
        if not (root / path).exists():
            raise MissingInputError(
                f"tune: {path} is missing: trials read the {what} stage's output; run "
                "`dvc repro audit features` (or `dvc repro`) first"
            )
    search = Search(
        params,
        cfg,
        FeatureTable(root / args.features),
        read_folds(root / args.split),
        resolve_store(root),
        read_json(root / args.leakage),
        root,
        exp_name=os.environ.get("DVC_EXP_NAME", "workspace"),
    )
    url = args.storage or cfg.storage or default_storage(root)
    name = args.study or search.default_name()
    study, parent_id = search.open(name, url)
    log.info("tune: study %s in %s (%d trials so far)", name, _redacted(url), len(study.trials))
    ran = search.optimize(study, parent_id, trials, args.timeout or cfg.timeout_s)
    out: dict[str, Any] = {"study": name, "ran": ran, "trials": study.trials}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(
            f"tune: study {name} has no completed trial (see the trials' MLflow runs); widen "
            "the space in tune.yaml or raise --trials"
        )
    best = study.best_trial
    log.info(
        "tune: best trial %d: %s %.4f; %s",
        best.number,
        cfg.metric,
        best.value,
        " ".join(overrides(best.params)),
    )
    for line in ui_hint(search.store, params.dataset):
        log.info("tune: %s", line)
    if args.apply:
        out["applied"] = apply(study, params.raw, root, args.force)
    else:
        log.info(
            "tune: to score it on test as a DVC experiment: audioclf tune --apply%s",
            f" --study {shlex.quote(name)}" if args.study else "",
        )
    return out


def rdb_storage(url: str, **settings: Any) -> RDBStorage:
    """The Optuna database at ``url``. Optuna creates its tables when it opens a database, and
    of two workers that open a fresh SQLite file at once one fails ("table studies already
    exists"): it is opened under the file lock beside it, and a writer waits up to
    ``SQLITE_BUSY_S`` for the other's write rather than failing after SQLite's 5 s."""
    engine = {"connect_args": {"timeout": SQLITE_BUSY_S}} if url.startswith("sqlite:") else {}
    with exclusive(url):
        return RDBStorage(url, engine_kwargs=engine, **settings)


def default_storage(root: Path) -> str:
    """SQLite beside the pipeline's data (created with its folder)."""
    folder = root / "data" / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
