"""Experiments: runs of the whole pipeline as DVC experiments, compared and reported.

Owns the commands ``audioclf ladder`` (the phases as ``-S`` overrides, run through the DVC
queue, each against the baseline -> ``reports/phases.md``: :mod:`.ladder`), ``audioclf
repeat`` (one experiment over seeds: :mod:`.repeat`), ``audioclf compare`` (two runs on
their test files, and the metric columns every report shares: :mod:`.compare`), ``audioclf
report`` (one run's phase report: :mod:`.report`) and ``audioclf show`` (``dvc exp show``
with the columns that matter: :mod:`.show`); :mod:`.runs` reads one run's files through DVC
and its MLflow run. Each command resolves the repository root (and the tracking store) in
its ``main`` and passes them down. Drives stages only through ``dvc``; may import evaluation,
features (which extras are installed), tracking, config, errors and io, never training or
the stages themselves.
"""
