"""Deploy: a trained model on new audio, outside the pipeline's feature table.

Owns loading a model with its own front-end and normalisation from a checkpoint, a
``models/`` folder or an MLflow model URI (:mod:`~audioclf.deploy.model`); prediction over
long recordings in sliding windows (:mod:`~audioclf.deploy.predictor`) and its tables -- a
per-window CSV, Raven selection tables, Audacity labels and a per-file summary
(:mod:`~audioclf.deploy.tables`), with the command line in :mod:`~audioclf.deploy.commands`;
the ONNX export and its parity check (:mod:`~audioclf.deploy.onnx_export`); and the MLflow Model
(a pyfunc wrapping front-end, network and labels) with its registration
(:mod:`~audioclf.deploy.pyfunc`). Decoding and the front-end are the features stage's own
code (:mod:`audioclf.features.stream`, :class:`audioclf.features.frontends.FrontEnd`), never
a second implementation. May import config, errors, io, cli, tracking, data, features and
models; nothing of training, evaluation or experiments (evaluation imports this package to
log the selected model).
"""
