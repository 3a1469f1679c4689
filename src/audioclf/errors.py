"""Errors a user can act on.

A :class:`UserError`'s message names the problem and the fix (a bad param, a
leakage refusal, missing weights, a dataset with nothing usable). A stage that
raises one ends with that message alone and exit status 1; ``-v`` (or
``AUDIOCLF_VERBOSE=1``) shows the traceback too (:mod:`audioclf.cli`). Every other
exception is a bug and keeps its traceback. :func:`printable` cleans text that came from
outside (a server's answer, a file's name, a decoder's complaint) before it is put in a
message or a list of reasons. Imports nothing but :mod:`re`: every layer may use it.
"""

import re

# ANSI/VT100 escape sequences (CSI ... final byte, and two-byte ESC sequences), and every other
# C0/C1 control character but tab and newline: a terminal would act on them when the message
# or a file holding it is shown (recolour, move the cursor, rewrite the title, hide text)
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
    r"|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?"  # OSC: window title, hyperlinks
    r"|\x1b[@-_]"  # other two-byte sequences
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def printable(text: str) -> str:
    r"""``text`` without terminal escape sequences or control characters (tab and newline stay).

    >>> printable("\x1b[31mred\x1b[0m.wav: \x1b]0;title\x07bad\rheader")
    'red.wav: badheader'
    """
    return _CONTROL.sub("", text)


class UserError(Exception):
    """A problem the user can fix; the message says what it is and what to do."""


class MissingInputError(UserError, FileNotFoundError):
    """An input a stage reads is absent; the message names the stage that writes it."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that holds something else than tensors and plain values, or is not ours."""
