"""Experiments: runs of the whole pipeline as DVC experiments, and their reports.

Owns the phase ladder (:mod:`~audioclf.experiments.phases`: the rungs as data;
:mod:`~audioclf.experiments.ladder`: queue, run, report), one experiment over seeds
(:mod:`~audioclf.experiments.repeat`), the phase table (:mod:`~audioclf.experiments.phase_report`),
``dvc exp show`` with the columns that matter (:mod:`~audioclf.experiments.show`)
and the DVC commands they use (:mod:`~audioclf.experiments.dvc_exps`). Drives stages
through DVC; may import config, cli, errors and io, never the stages' library code
directly.
"""
