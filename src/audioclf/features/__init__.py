"""Features: decoded audio to the arrays models read.

Owns decoding (:mod:`~audioclf.features.audio`), the front-ends
(:mod:`~audioclf.features.frontends`, one torch path on every device), the shared
content-addressed store of computed segments (:mod:`~audioclf.features.store`, the
:class:`~audioclf.features.store.FeatureStore` at ``features.store_dir``, written by
:mod:`~audioclf.features.shards`), the features stage's work
(:mod:`~audioclf.features.extract`, its threads in :mod:`~audioclf.features.workers`) and its output, the
feature table at ``data/features`` (:mod:`~audioclf.features.table`, read through
:class:`~audioclf.features.table.FeatureTable`). May import config, data, devices,
errors and io; nothing of models, training or evaluation.
"""
