"""``python -m audioclf.report EXP``: a run's phase report (:mod:`audioclf.experiments.report`)."""

from audioclf.cli import command
from audioclf.experiments.report import main

if __name__ == "__main__":
    command(main)
