"""Evaluation: scoring checkpoints on test files, once, and reporting it.

Owns the evaluate stage -- scoring over folds, its output files and what it logs to MLflow,
including the selected model through deploy (:mod:`~audioclf.evaluation.evaluate`); the
metrics, one implementation of each (:mod:`~audioclf.evaluation.metrics`; also used for
validation in training); bootstrap intervals and fold summaries
(:mod:`~audioclf.evaluation.bootstrap`), head/mid/tail buckets
(:mod:`~audioclf.evaluation.buckets`), calibration (:mod:`~audioclf.evaluation.calibration`),
figures (:mod:`~audioclf.evaluation.plots`), the per-file probabilities
(:mod:`~audioclf.evaluation.predictions`) and comparisons of runs
(:mod:`~audioclf.evaluation.paired`, :mod:`~audioclf.evaluation.seeds`). May import deploy,
models, features, data, config, tracking and io; never training.
"""
