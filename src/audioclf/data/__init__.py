"""Data: the audio a pipeline sees, and how it is split and checked.

Owns the dataset adapters (:mod:`~audioclf.data.datasets`: download or generate audio,
write the common manifest), the manifest itself (:mod:`~audioclf.data.manifest`), the data's profile
(:mod:`~audioclf.data.profile`), the
grouped splits and folds (:mod:`~audioclf.data.split`) and the leakage audit
(:mod:`~audioclf.data.audit`) with its audio fingerprint (:mod:`~audioclf.data.fingerprint`). May import config, errors and io;
nothing of features, models, training or evaluation.
"""
