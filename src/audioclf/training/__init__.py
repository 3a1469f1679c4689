"""Training: the loop and all it needs, and the train stage's fold runner.

Owns the epoch loop (:mod:`~audioclf.training.loop`), optimisation and schedules
(:mod:`~audioclf.training.optim`), losses (:mod:`~audioclf.training.losses`),
on-the-fly augmentation (:mod:`~audioclf.training.augment`), resuming a killed run
(:mod:`~audioclf.training.resume`), training curves (:mod:`~audioclf.training.curves`)
and the fold runner (:mod:`~audioclf.training.folds`). May import models, features,
data, evaluation's metrics, config, devices, tracking and io; evaluation never
imports training.
"""
