"""``python -m audioclf.export --format onnx`` (or ``audioclf export``): a trained model as ONNX.

See :mod:`audioclf.deploy.export_command` and ``--help``.
"""

from audioclf.cli import command
from audioclf.deploy.export_command import export_main as main

__all__ = ["main"]

if __name__ == "__main__":
    command(main)
