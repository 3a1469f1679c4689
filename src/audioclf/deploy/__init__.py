"""Deploy: a trained model on new audio, outside the pipeline's feature table.

Owns loading a model with its own front-end and normalisation from a checkpoint, a
``models/`` folder or an MLflow model URI (:mod:`~audioclf.deploy.model`); prediction over
long recordings in sliding windows (:mod:`~audioclf.deploy.predictor`) and its tables -- a
per-window CSV, Raven selection tables, Audacity labels and a per-file summary
(:mod:`~audioclf.deploy.tables`), with the ``audioclf predict`` command in
:mod:`~audioclf.deploy.predict`; the ONNX export with its parity check, used by the export stage
and the ``audioclf export`` command (:mod:`~audioclf.deploy.export`); and the MLflow Model (a
pyfunc wrapping front-end, network and labels) with its registration
(:mod:`~audioclf.deploy.pyfunc`, whose code file is :mod:`~audioclf.deploy.pyfunc_code`).
Decoding and the front-end are the features stage's own code (:mod:`audioclf.features.stream`,
:class:`audioclf.features.frontends.FrontEnd`), never a second implementation. May import
config, errors, io, cli, tracking, data, features and models; nothing of training, evaluation or
experiments (evaluation imports this package to log the selected model). A tracking URI or path
comes in as an argument, resolved by the command or stage that runs it.
"""
