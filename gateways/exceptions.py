"""One error hierarchy for the gateways. Every one of them fails the record being processed: the service
function reports it (ReportBatchItemFailures), Lambda retries it, and after the mapping's retries it goes to
the dead-letter queue. `SkipEvent` is the exception: the configured `skip` policy, handled by the caller."""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every error a gateway raises on purpose."""


class MissingRecording(GatewayError):
    """A replay needs a recording the original processing did not leave (or left for another question), and
    the policy is `error`. Never answered by a silent live call."""

    def __init__(self, event_id: str, call: str, why: str = "no recording") -> None:
        super().__init__(
            f"event {event_id}: {why} of call {call!r}; a replay never calls live unless ES_GATEWAY_MISSING "
            "says so (error|skip|live)"
        )
        self.event_id = event_id
        self.call = call


class SkipEvent(GatewayError):
    """The `skip` policy: a recording is missing, so the caller skips this event's external work (counted and
    logged, not retried)."""

    def __init__(self, event_id: str, call: str) -> None:
        super().__init__(
            f"event {event_id}: no recording of call {call!r}; skipped (ES_GATEWAY_MISSING=skip)"
        )
        self.event_id = event_id
        self.call = call


# 4xx answers that mean "not now" rather than "no": the request was not taken and may be sent again.
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})


class ExternalSystemError(GatewayError):
    """The external system failed or could not be reached. `maybe_sent` is True when the request may have
    reached it (a timeout or a dropped connection after sending): retried with the same idempotency key."""

    def __init__(self, message: str, *, maybe_sent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent
        self.status = status

    @property
    def refused(self) -> bool:
        """The external system answered that it will not take this request, ever (a 4xx other than 408, 425
        and 429): sending it again cannot help; what we send has to change."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status not in RETRYABLE_CLIENT_ERRORS
        )


class ReplayNotAuthorised(GatewayError):
    """A fix correction for a replay whose stored definition is missing or does not say `fix`: corrections
    move real things in external systems, so they need the replayer's own record of the replay."""
