"""The failures fdsl_app reports in one line, as opposed to bugs, which show their traceback.

Bad input is a ``ValueError`` raised on purpose, with a message naming the input and what it accepts (the command
line exits with status 2). :class:`RunFailure` is a run that could not complete for a reason its message explains
and the user can act on (status 1). Anything else that escapes is unexpected, and the command line says so.
"""

from __future__ import annotations


class RunFailure(RuntimeError):
    """A run stopped for a reason outside the code, explained in the message: a category search whose candidate
    budget ran out, a rank that cannot reach rank 0, a loss that diverged."""
