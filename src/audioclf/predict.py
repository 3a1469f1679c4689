"""``python -m audioclf.predict`` (or ``audioclf predict``): a trained model over recordings.

See :mod:`audioclf.deploy.commands` and ``--help``.
"""

from audioclf.cli import command
from audioclf.deploy.commands import predict_main as main

__all__ = ["main"]

if __name__ == "__main__":
    command(main)
