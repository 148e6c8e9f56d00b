"""The operator commands' errors: one line a user can act on; the CLI prints it and exits non-zero.

- `OpsUsageError`: a bad flag or value (exit 2).
- `OpsError`: the world is not as the command needs it, or a step failed: a missing table, a rebuild that is
  not ready to swap, a replay that did not complete, a shadow that did not catch up in time (exit 1).
- `Stopped`: a replay stopped by a signal before its end; the message says how to continue (exit 3).
"""

from __future__ import annotations


class OpsError(Exception):
    """Base class of the errors the operator commands raise on purpose. `str(error)` is one line."""

    exit_code = 1


class OpsUsageError(OpsError):
    """A bad argument."""

    exit_code = 2


class Stopped(OpsError):
    """A replay was stopped before its end (SIGTERM/SIGINT); it can be continued."""

    exit_code = 3
