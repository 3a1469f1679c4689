"""``python -m audioclf.compare EXP_A EXP_B``: two runs compared on their test files (:mod:`audioclf.experiments.compare`)."""

from audioclf.cli import command
from audioclf.experiments.compare import main

if __name__ == "__main__":
    command(main)
