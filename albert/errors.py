"""One exception type for every mistake a user can make.

The CLI prints an `AlbertError` as a single line (no traceback) and exits with status 2;
library callers can catch it like any other exception. Messages say what went wrong *and*
what to do about it.
"""

from __future__ import annotations


class AlbertError(Exception):
    """A problem caused by the user's input (files, options, configs), not a bug."""
