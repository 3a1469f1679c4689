"""Evaluation: scoring checkpoints on test files, once, and reporting it.

Owns the test-set evaluation over folds (:mod:`~audioclf.evaluation.evaluate`), the
metrics (:mod:`~audioclf.evaluation.metrics`; also used for validation in training),
bootstrap intervals and fold summaries (:mod:`~audioclf.evaluation.bootstrap`),
head/mid/tail buckets (:mod:`~audioclf.evaluation.buckets`), calibration
(:mod:`~audioclf.evaluation.calibration`), figures (:mod:`~audioclf.evaluation.plots`)
and the evaluate stage's outputs and tracking (:mod:`~audioclf.evaluation.folds`, which
logs the selected model through deploy). May import deploy, models, features, data, config,
tracking and io; never training.
"""
