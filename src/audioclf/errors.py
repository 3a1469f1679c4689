"""Errors a user can act on.

A :class:`UserError`'s message names the problem and the fix (a bad param, a
leakage refusal, missing weights, a dataset with nothing usable). A stage that
raises one ends with that message alone and exit status 1; ``-v`` (or
``AUDIOCLF_VERBOSE=1``) shows the traceback too (:mod:`audioclf.cli`). Every other
exception is a bug and keeps its traceback. Imports nothing: every layer may use it.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what it is and what to do."""


class MissingInputError(UserError, FileNotFoundError):
    """An input a stage reads is absent; the message names the stage that writes it."""
