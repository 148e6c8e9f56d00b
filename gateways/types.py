"""The gateways' vocabulary: modes, the call context bound to one event, recordings and the policy for a missing
recording. See docs/gateways.md for what each mode does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from eventlog.envelope import Event

# live: perform and record. replay (rebuild, feature): send nothing; answer queries from recordings.
# fix: answer queries from recordings; send only the correction of what the original processing sent.
Mode = Literal["live", "replay", "fix"]
Kind = Literal["query", "update"]
# What a recording says happened:
#   answered    a query, with the answer used
#   pending     an update about to be sent, or sent without its answer recorded yet (a crash, a timeout)
#   sent        an update the external system took, with its answer
#   nothing     the code decided to send nothing (a live call), or the fix found no difference
#   suppressed  an update a replay did not send (what it would have sent is kept, for a look)
#   refused     an update the external system refused for good (a 4xx): nothing taken; a fix sends it anew
Status = Literal["answered", "pending", "sent", "nothing", "suppressed", "refused"]
# What a replay does when a recording it needs is not there (ES_GATEWAY_MISSING).
MissingPolicy = Literal["error", "skip", "live"]
MISSING_POLICIES: tuple[MissingPolicy, ...] = ("error", "skip", "live")

JSON = dict[str, Any]

# fullmatch, ASCII: with match and "$", a name with a trailing line break would pass (see eventlog.ids).
_CALL_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,200}", re.ASCII)


def check_call_name(name: str) -> str:
    """A call name is stable across code versions (a fix replay looks the original up by it): letters, digits
    and `_ . : / -`; never `@`, which separates a replay's own recordings of the call (`name@replay_id`)."""
    if not isinstance(name, str) or not _CALL_NAME.fullmatch(name):
        raise ValueError(f"call name {name!r} must be 1-200 of letters, digits and _ . : / -")
    return name


def mode_of(event: Event) -> Mode:
    """The gateway mode an event is processed in: live events are live; a fix replay is fix; rebuild and
    feature replays are replay."""
    if event.replay is None:
        return "live"
    return "fix" if event.replay.mode == "fix" else "replay"


@dataclass(frozen=True, slots=True)
class CallContext:
    """One event being processed: what every gateway call is bound to and keyed by."""

    event_id: str
    aggregate_id: str
    version: int
    mode: Mode
    replay_id: str | None = None

    @classmethod
    def for_event(cls, event: Event) -> CallContext:
        """The context of a committed event (live or replayed)."""
        return cls(
            event_id=event.event_id,
            aggregate_id=event.aggregate_id,
            version=event.version,
            mode=mode_of(event),
            replay_id=event.replay.replay_id if event.replay else None,
        )

    def key(self, call: str) -> str:
        """The sort key of this context's own recording of `call`: the call name when live (the original
        processing), `name@replay_id` in a replay (a correction, a suppressed update, a live fallback), so a
        replay never overwrites what the original processing recorded."""
        return call if self.replay_id is None else f"{call}@{self.replay_id}"


@dataclass(frozen=True, slots=True)
class Recording:
    """One item of the gateway_recordings table: a call made (or not) while processing one event."""

    event_id: str
    call: str  # the sort key: `name` or `name@replay_id`
    kind: Kind
    status: Status
    mode: Mode
    request: JSON | None = None  # what was (or would have been) sent; None: nothing
    response: JSON | None = None  # what came back (a query's answer, an update's receipt)
    idempotency_key: str | None = None  # sent with an update; the same on every retry of it
    aggregate_id: str = ""
    version: int = 0
    replay_id: str | None = None
    recorded_at: str = ""
    updated_at: str = ""
    attempts: int = 0  # times an update was sent (more than 1: a retry after a crash or a timeout)
    note: str | None = None  # why: "live fallback", the last error of a pending update, ...
    wanted: JSON | None = None  # in a fix: what the current code would send in all (the correction's basis)
    expires_at: int | None = None  # epoch seconds (DynamoDB TTL) for a replay's own recordings

    @property
    def name(self) -> str:
        """The call name without the replay suffix."""
        return self.call.split("@", 1)[0]

    @property
    def is_original(self) -> bool:
        """Recorded by the original (live) processing of the event."""
        return "@" not in self.call
