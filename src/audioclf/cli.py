"""Command lines: how every stage and command starts, logs and ends.

:func:`run` wraps a ``main(argv)``: it sets up logging (``INFO`` to stderr, ``DEBUG``
with ``-v``/``--verbose`` or ``AUDIOCLF_VERBOSE=1``) and turns a
:class:`~audioclf.errors.UserError` into one line naming the problem and the fix, and
exit status 1, without a traceback (which ``-v`` keeps). :func:`parser` gives each
its argument parser with ``--params`` and ``-v``; :func:`command` also exits with the
status a ``main`` returns; :func:`stack_imports` explains a broken install at an entry
point's imports. :func:`console` is the ``audioclf`` command (``python -m audioclf``),
whose subcommands are the modules in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from audioclf.environment import VERBOSE_ENV, BrokenEnvironment, check_environment
from audioclf.errors import UserError

log = logging.getLogger("audioclf")

# ``audioclf <command>`` -> the module whose main(argv) it runs
COMMANDS = {
    "predict": (
        "audioclf.deploy.predict",
        "a trained model over recordings -> windows, Raven, Audacity, summary",
    ),
    "serve": (
        "audioclf.deploy.serve",
        "a model over HTTP as mlflow models serve serves it, with request bodies bounded",
    ),
    "export": ("audioclf.deploy.export", "a trained model as ONNX, with its labels and front-end"),
    "show": ("audioclf.experiments.show", "dvc exp show with the columns that matter"),
    "compare": (
        "audioclf.experiments.compare",
        "two runs on their test files: differences with paired intervals, McNemar",
    ),
    "report": (
        "audioclf.experiments.report",
        "a run's phase report (markdown) from its DVC files and MLflow run",
    ),
    "ladder": (
        "audioclf.experiments.ladder",
        "the phase ladder as DVC experiments -> reports/phases.md",
    ),
    "repeat": ("audioclf.experiments.repeat", "one experiment over N seeds: mean ± std"),
    "tune": (
        "audioclf.experiments.tune",
        "an Optuna search over params on the validation folds; --apply runs the best on test",
    ),
    "check": ("audioclf.pipeline", "dvc.yaml, params.yaml and dvc.lock agree"),
}


@contextmanager
def stack_imports() -> Iterator[None]:
    """Around an entry point's imports: when one fails because the installed stack does not load
    together (a torchaudio built for another torch, say), exit 1 with one line naming the versions
    and the fix (:func:`audioclf.environment.check_environment`) instead of a traceback deep in an
    import; ``-v`` keeps the traceback. Any other import error propagates as it is.
    """
    try:
        yield
    except (ImportError, OSError) as exc:  # a missing symbol is an OSError from dlopen
        try:
            check_environment()
        except BrokenEnvironment as broken:
            if verbose(sys.argv[1:]):
                raise broken from exc
            print(f"audioclf: {broken}", file=sys.stderr)
            raise SystemExit(1) from None
        raise


def verbose(argv: Sequence[str]) -> bool:
    """Whether ``-v``/``--verbose`` is among ``argv`` or ``AUDIOCLF_VERBOSE`` is set."""
    return bool(os.environ.get(VERBOSE_ENV)) or any(a in ("-v", "--verbose") for a in argv)


def setup_logging(debug: bool) -> None:
    """Progress lines on stderr: ``message`` for INFO, ``LEVEL: message`` above it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # third-party libraries: warnings only
    log.setLevel(logging.DEBUG if debug else logging.INFO)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname}: {text}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def parser(
    doc: str | None, *, prog: str | None = None, params: bool = True
) -> argparse.ArgumentParser:
    """An argument parser with the options every stage and command has: ``-v``, and ``--params``
    unless ``params`` is False (a command that reads no params file). ``prog`` names the command
    in its usage line (``audioclf ladder``)."""
    ap = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if params:
        ap.add_argument(
            "--params", default="params.yaml", help="the params file (default: params.yaml)"
        )
    ap.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, and tracebacks of user errors"
    )
    return ap


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> Any:
    """Run ``main(argv)`` as a command: logging set up, a :class:`UserError` as one line and exit 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = verbose(argv)
    setup_logging(debug)
    try:
        with stack_imports():  # torch and the rest may be imported only now, by main
            return main(argv)
    except UserError as exc:
        if debug:
            raise
        log.error("%s", exc)
        raise SystemExit(1) from None


def command(main: Callable[[list[str]], Any]) -> NoReturn:
    """:func:`run` ``main`` on ``sys.argv`` and exit: with its result if that is an int, else 0."""
    status = run(main)
    sys.exit(status if isinstance(status, int) else 0)


def dispatch(argv: Sequence[str] | None = None) -> Any:
    """``audioclf <command> [options]``: see ``audioclf --help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<15} {about}" for name, (_, about) in COMMANDS.items()]
        print(
            "usage: audioclf <command> [options]   (audioclf <command> --help for its options)\n\ncommands:\n"
            + "\n".join(lines),
            file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout,
        )
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\naudioclf: unknown command {argv[0]!r}", file=sys.stderr)
            raise SystemExit(2)
        return None
    with stack_imports():
        module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


def console() -> NoReturn:
    """The ``audioclf`` console script (and ``python -m audioclf``)."""
    command(dispatch)
