"""``python -m audioclf.ladder``: the phase ladder -> reports/phases.md (:mod:`audioclf.experiments.ladder`)."""

from audioclf.cli import command
from audioclf.experiments.ladder import main

if __name__ == "__main__":
    command(main)
