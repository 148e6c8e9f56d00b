"""One error hierarchy for the event log."""

from __future__ import annotations


class EventLogError(Exception):
    """Base class of every error the event log raises on purpose."""


class InvalidEvent(EventLogError):
    """An event or record that does not match the data contract (it cannot be decoded or is malformed)."""


class ConcurrencyError(EventLogError):
    """A conditional write lost a race more times than it is worth retrying (someone else wrote first)."""


class CommitInterrupted(EventLogError):
    """The log could not take a write (throttled, unavailable). Submissions before `index` are committed;
    the one at `index` and every later one are not, and must be retried in order."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"commit interrupted at submission {index}: {cause}")
        self.index = index
        self.cause = cause
