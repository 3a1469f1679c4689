"""``python -m audioclf <command>``: the same as the ``audioclf`` command (:func:`audioclf.cli.main`)."""

from audioclf.cli import console

if __name__ == "__main__":
    console()
