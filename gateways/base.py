"""The gateway: every call to an external system goes through `Gateway.query` (answers in) or `Gateway.update`
(calls out), bound to the event being processed (`CallContext`) and so to its mode.

- live: a query is performed and recorded (a redelivered event gets the recorded answer); an update is
  recorded as pending, sent with an idempotency key, then recorded as sent, and never sent twice.
- replay (rebuild, feature): a query is answered from the original recording; an update is not sent, and is
  recorded as suppressed (what would have gone out, for a look).
- fix: a query is answered from the original recording; an update sends only the difference between what the
  external system holds (the original call and every correction since) and what the current code would send,
  recorded like any call; nothing when they agree. A call in doubt (pending) is finished first, with its own
  request and key.

A recording a replay needs and does not find is never replaced by a silent live call: the `MissingPolicy` says
what happens (error: raise MissingRecording, the default; skip: raise SkipEvent for the caller to skip the
event; live: call, and record it as the replay's own). docs/gateways.md has the details and the guarantees.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from eventlog.envelope import utc_now
from gateways.exceptions import (
    ExternalSystemError,
    GatewayError,
    MissingRecording,
    ReplayNotAuthorised,
    SkipEvent,
)
from gateways.recordings import RecordingConflict, RecordingStore
from gateways.types import JSON, CallContext, MissingPolicy, Recording, Status, check_call_name

# A query: the request -> the answer.
Perform = Callable[[JSON], JSON]
# An update: the request and its idempotency key -> the external system's receipt.
Send = Callable[[JSON, str], JSON]
# A fix: (every request the external system took for this call, oldest first; what the current code would
# send in all, or None for nothing) -> the correction to send, or None when there is no difference.
Difference = Callable[[Sequence[JSON], JSON | None], JSON | None]
# replay id -> the mode its stored definition says, or None when none is stored.
ReplayModes = Callable[[str], str | None]

REPLAY_RECORDING_TTL_S = 30 * 24 * 3600
_CREATE_RACE_RETRIES = 3

UpdateAction = Literal[
    "refused",  # the external system refused the request for good (a 4xx): recorded, nothing taken
    "sent",  # live: sent now
    "resent",  # a pending call (a crash or a timeout before its outcome was recorded) sent again, same key
    "already_done",  # recorded as done by an earlier delivery of the same event: nothing sent
    "nothing",  # live: the code sends nothing for this event (recorded, so a fix knows)
    "suppressed",  # replay: not sent (recorded as suppressed)
    "corrected",  # fix: the correction sent
    "no_difference",  # fix: the current code would send what the external system already holds
]


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """A query's answer and where it came from."""

    answer: JSON
    source: Literal["live", "recorded", "live_fallback"]


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What an update did, the request sent this time (None when nothing was), and its recording."""

    action: UpdateAction
    sent: JSON | None
    recording: Recording | None


class Gateway:
    """Runs queries and updates per mode, recording them in a RecordingStore (see the module docstring).

    - `missing`: the policy for a recording a replay needs and does not find.
    - `replay_modes`: how a fix correction checks that its replay is a fix replay the replayer recorded
      (`eventlog.replays.ReplayDirectory`); None skips the check (tests of the gateway alone).
    """

    def __init__(
        self,
        recordings: RecordingStore,
        *,
        missing: MissingPolicy = "error",
        replay_modes: ReplayModes | None = None,
        clock: Callable[[], str] = utc_now,
        epoch: Callable[[], float] = time.time,
    ) -> None:
        self.recordings = recordings
        self.missing = missing
        self._replay_modes = replay_modes
        self._clock = clock
        self._epoch = epoch

    # -- queries ---------------------------------------------------------------------------------------------

    def query(self, ctx: CallContext, call: str, request: JSON, perform: Perform) -> QueryAnswer:
        """Ask the external system (live), or answer from the recording of the original processing (replay,
        fix). `call` names the question stably across code versions; `request` is compared with the recorded
        one, so a replay asking something else is not given another question's answer."""
        check_call_name(call)
        if ctx.mode == "live":
            return self._live_query(ctx, call, request, perform)
        original = self.recordings.get(ctx.event_id, call)
        if original is not None and original.status == "answered" and original.response is not None:
            if original.request == request:
                return QueryAnswer(original.response, "recorded")
            why = f"a recording for another request ({original.request})"
        else:
            why = "no recording"
        own = self.recordings.get(ctx.event_id, ctx.key(call))
        if (
            own is not None
            and own.status == "answered"
            and own.response is not None
            and own.request == request
        ):
            return QueryAnswer(own.response, "live_fallback")  # this replay's own earlier fallback
        if self.missing == "error":
            raise MissingRecording(ctx.event_id, call, why)
        if self.missing == "skip":
            raise SkipEvent(ctx.event_id, call)
        answer = perform(request)
        self.recordings.put(
            self._recording(
                ctx,
                ctx.key(call),
                "query",
                "answered",
                request=request,
                response=answer,
                note=f"live fallback: {why} (ES_GATEWAY_MISSING=live)",
                expires=True,
            )
        )
        return QueryAnswer(answer, "live_fallback")

    def _live_query(self, ctx: CallContext, call: str, request: JSON, perform: Perform) -> QueryAnswer:
        existing = self.recordings.get(ctx.event_id, call)
        if existing is not None and existing.status == "answered" and existing.response is not None:
            # A redelivered event decides with the answer it had the first time.
            return QueryAnswer(existing.response, "recorded")
        answer = perform(request)
        recording = self._recording(ctx, call, "query", "answered", request=request, response=answer)
        if self.recordings.create(recording):
            return QueryAnswer(answer, "live")
        winner = self.recordings.get(ctx.event_id, call)
        if winner is None or winner.response is None:
            raise GatewayError(f"event {ctx.event_id}: recording of {call!r} vanished while being written")
        return QueryAnswer(winner.response, "recorded")  # a concurrent delivery recorded first: agree with it

    # -- updates ---------------------------------------------------------------------------------------------

    def update(
        self, ctx: CallContext, call: str, wanted: JSON | None, send: Send, difference: Difference
    ) -> UpdateResult:
        """Tell the external system what this event means for it: `wanted` is the request the current code
        would send (None: nothing). Live: sent once. Replay: suppressed. Fix: only the `difference` from what
        the external system already took for this call is sent."""
        check_call_name(call)
        if ctx.mode == "live":
            return self._live_update(ctx, call, wanted, send)
        if ctx.mode == "replay":
            recording = self._recording(
                ctx, ctx.key(call), "update", "suppressed", request=wanted, expires=True
            )
            self.recordings.put(recording)  # a redelivery writes the same again: harmless
            return UpdateResult("suppressed", None, recording)
        return self._fix_update(ctx, call, wanted, send, difference)

    def _live_update(self, ctx: CallContext, call: str, wanted: JSON | None, send: Send) -> UpdateResult:
        for _ in range(_CREATE_RACE_RETRIES):
            existing = self.recordings.get(ctx.event_id, call)
            if existing is not None:
                return self._settle_existing(existing, send)
            if wanted is None:
                recording = self._recording(ctx, call, "update", "nothing")
                if self.recordings.create(recording):
                    return UpdateResult("nothing", None, recording)
                continue
            pending = self._recording(
                ctx,
                call,
                "update",
                "pending",
                request=wanted,
                idempotency_key=f"{ctx.event_id}:{call}",
                attempts=1,
            )
            # Recorded before sending: a crash after the send leaves it pending, and the retry sends the SAME
            # request with the SAME key (never what a changed code would compute now).
            if self.recordings.create(pending):
                return self._send(pending, send, "sent")
        raise GatewayError(f"event {ctx.event_id}: recording of {call!r} keeps changing under this call")

    def _fix_update(
        self, ctx: CallContext, call: str, wanted: JSON | None, send: Send, difference: Difference
    ) -> UpdateResult:
        self._authorise_fix(ctx)
        for _ in range(_CREATE_RACE_RETRIES):
            history = self.recordings.calls(ctx.event_id, call)
            own = next((r for r in history if r.call == ctx.key(call)), None)
            if own is not None:
                return self._settle_existing(own, send)
            original = next((r for r in history if r.is_original), None)
            note = None
            if original is None:
                if self.missing == "error":
                    raise MissingRecording(ctx.event_id, call, "no recording of the original processing")
                if self.missing == "skip":
                    raise SkipEvent(ctx.event_id, call)
                note = (
                    "no recording of the original processing: taken as nothing sent (ES_GATEWAY_MISSING=live)"
                )
            elif original.kind != "update":
                raise GatewayError(f"event {ctx.event_id}: {call!r} was recorded as a {original.kind}")
            in_doubt = [r for r in history if r.status == "pending"]
            if in_doubt:
                # What the external system holds is unknown until these calls are finished: send each again,
                # its own request with its own key (taken once by a system that honours keys), then look again.
                for recording in in_doubt:
                    self._resend(recording, send)
                continue
            taken = [r.request for r in history if r.status == "sent" and r.request is not None]
            correction = difference(taken, wanted)
            if correction is None:
                recording = self._recording(ctx, ctx.key(call), "update", "nothing", wanted=wanted, note=note)
                if self.recordings.create(recording):
                    return UpdateResult("no_difference", None, recording)
                continue
            pending = self._recording(
                ctx,
                ctx.key(call),
                "update",
                "pending",
                request=correction,
                wanted=wanted,
                idempotency_key=f"{ctx.event_id}:{ctx.key(call)}",
                attempts=1,
                note=note,
            )
            if self.recordings.create(pending):
                return self._send(pending, send, "corrected")
        raise GatewayError(f"event {ctx.event_id}: recording of {call!r} keeps changing under this fix")

    def _authorise_fix(self, ctx: CallContext) -> None:
        if self._replay_modes is None or ctx.replay_id is None:
            return
        mode = self._replay_modes(ctx.replay_id)
        if mode != "fix":
            stored = "no stored definition" if mode is None else f"a stored definition that says {mode}"
            raise ReplayNotAuthorised(
                f"event {ctx.event_id}: replay {ctx.replay_id} is marked fix but has {stored}; corrections are "
                "sent only for fix replays the replayer recorded"
            )

    def _settle_existing(self, existing: Recording, send: Send) -> UpdateResult:
        if existing.status == "pending":
            return self._resend(existing, send)
        return UpdateResult("already_done", None, existing)

    def _resend(self, pending: Recording, send: Send) -> UpdateResult:
        attempt = replace(pending, attempts=pending.attempts + 1, updated_at=self._clock())
        try:
            self.recordings.replace_pending(attempt)
        except RecordingConflict:
            done = self.recordings.get(pending.event_id, pending.call)
            return UpdateResult("already_done", None, done)
        return self._send(attempt, send, "resent")

    def _send(self, pending: Recording, send: Send, action: UpdateAction) -> UpdateResult:
        if pending.request is None or pending.idempotency_key is None:
            raise GatewayError(f"pending recording {pending.event_id} {pending.call} has no request to send")
        try:
            receipt = send(pending.request, pending.idempotency_key)
        except ExternalSystemError as exc:
            if exc.refused:
                # A final "no": retrying the same request would only block the stream behind it. Recorded as
                # refused (nothing taken), so the event moves on and a fix replay after a code fix sends anew.
                refused = replace(pending, status="refused", updated_at=self._clock(), note=str(exc)[:1000])
                try:
                    self.recordings.replace_pending(refused)
                except RecordingConflict:
                    return UpdateResult(
                        "already_done", None, self.recordings.get(pending.event_id, pending.call)
                    )
                return UpdateResult("refused", None, refused)
            # Stays pending: the retry of this event sends the same request with the same key.
            self._note_failure(pending, str(exc))
            raise
        done = replace(pending, status="sent", response=receipt, updated_at=self._clock(), note=pending.note)
        try:
            self.recordings.replace_pending(done)
        except RecordingConflict:
            # Another delivery finished the same call meanwhile; the key made the external system take it once.
            return UpdateResult("already_done", None, self.recordings.get(pending.event_id, pending.call))
        return UpdateResult(action, pending.request, done)

    def _note_failure(self, pending: Recording, error: str) -> None:
        # The note is for people; the error being raised is what matters.
        with contextlib.suppress(Exception):
            self.recordings.replace_pending(replace(pending, note=f"last attempt failed: {error}"[:1000]))

    # -- recordings ------------------------------------------------------------------------------------------

    def _recording(
        self,
        ctx: CallContext,
        key: str,
        kind: Literal["query", "update"],
        status: Status,
        *,
        request: JSON | None = None,
        response: JSON | None = None,
        wanted: JSON | None = None,
        idempotency_key: str | None = None,
        attempts: int = 0,
        note: str | None = None,
        expires: bool = False,
    ) -> Recording:
        now = self._clock()
        return Recording(
            event_id=ctx.event_id,
            call=key,
            kind=kind,
            status=status,
            mode=ctx.mode,
            request=request,
            response=response,
            idempotency_key=idempotency_key,
            aggregate_id=ctx.aggregate_id,
            version=ctx.version,
            replay_id=ctx.replay_id,
            recorded_at=now,
            updated_at=now,
            attempts=attempts,
            note=note,
            wanted=wanted,
            # A replay's own look-only recordings age out; corrections never do (a later fix must know them).
            expires_at=int(self._epoch()) + REPLAY_RECORDING_TTL_S if expires else None,
        )
