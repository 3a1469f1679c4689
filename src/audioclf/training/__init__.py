"""Training: the loop and all it needs, and the train stage's fold runner.

Owns the epoch loop (:mod:`~audioclf.training.loop`: selection, early stopping,
checkpoints), one epoch's steps (:mod:`~audioclf.training.steps`), the input statistics
and epoch order (:mod:`~audioclf.training.data`), optimisation and schedules
(:mod:`~audioclf.training.optim`), losses (:mod:`~audioclf.training.losses`),
on-the-fly augmentation (:mod:`~audioclf.training.augment`), resuming a killed run
(:mod:`~audioclf.training.resume`), training curves (:mod:`~audioclf.training.curves`),
the fold runner (:mod:`~audioclf.training.stage`), and data-parallel training: each
process's rank and collectives (:mod:`~audioclf.training.distributed`) and the stage's
torchrun launch (:mod:`~audioclf.training.launch`). May import models, features,
data, evaluation's metrics, config, devices, tracking and io; evaluation never
imports training.
"""
