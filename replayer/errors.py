"""The replayer's errors. Each carries one line a user can act on; the CLI prints it and exits non-zero.

- `UsageError`: a bad flag or value (exit 2, like argparse).
- `SetupError`: the world is not as the replay needs it: a missing table or stream, no credentials, an
  endpoint that does not answer (exit 1).
- `AwsError`: a call to DynamoDB or Kinesis failed; `retryable` says whether trying again can help and
  `outcome_unknown` whether the request may have taken effect anyway (a 5xx, a timeout).
- `ReplayFailed`: the replay started but cannot finish: an event too large for a Kinesis record, an item that
  is not an event, a record that keeps failing (exit 1; the checkpoints let `--resume` continue after a fix).
"""

from __future__ import annotations


class ReplayError(Exception):
    """Base class of every error the replayer raises on purpose. `str(error)` is one line for the user."""

    exit_code = 1


class UsageError(ReplayError):
    """A bad argument or filter value."""

    exit_code = 2


class SetupError(ReplayError):
    """A missing table or stream, missing credentials, an unreachable endpoint, a replay id already used."""


class ReplayFailed(ReplayError):
    """The replay cannot go on (the message names the event or the AWS error)."""


class AwsError(ReplayError):
    """A DynamoDB or Kinesis call failed. `code` is AWS's error code (`ResourceNotFoundException`, ...)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 0,
        retryable: bool = False,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
