"""Experiments: runs of the whole pipeline as DVC experiments, and what they are compared and reported by.

Owns the phase ladder (:mod:`~audioclf.experiments.phases`: the rungs as data;
:mod:`~audioclf.experiments.ladder`: queue, run, report; :mod:`~audioclf.experiments.phase_pairs`:
each phase against the baseline; :mod:`~audioclf.experiments.phase_report`: ``phases.md``),
one experiment over seeds (:mod:`~audioclf.experiments.repeat`), two runs compared
(:mod:`~audioclf.experiments.compare`), the generated report of one run
(:mod:`~audioclf.experiments.report`), reading a run's files through DVC
(:mod:`~audioclf.experiments.runs`) and its MLflow run (:mod:`~audioclf.experiments.tracked`),
``dvc exp show`` with the columns that matter (:mod:`~audioclf.experiments.show`) and the DVC
commands they use (:mod:`~audioclf.experiments.dvc_exps`). Drives stages through DVC and reads
their outputs back; may import evaluation (the paired statistics, the prediction files),
tracking, config, cli, errors and io, never training or the stages themselves.
"""
