"""Rebuild state from the log into a shadow table, compare it with the live table, swap or drop it.

    rebuild   create the shadow table, replay the log in rebuild mode with `state_table` = the shadow (the write
              function projects the replay there), wait until the shadow has caught up, compare
    diff      compare again (catching up what the live table did meanwhile)
    swap      apply the shadow to the live table, conditionally per item, then delete the shadow
    drop      delete the shadow without swapping

The rebuild's record is an item of the replay_checkpoints table: key (rebuild id, part "rebuild"), beside the
main replay's own checkpoints (the rebuild id is also that replay's id). It has no TTL until the rebuild is
swapped or dropped, so a shadow table is never forgotten by its record first.

Caught up: every aggregate the replay put has reached, in the shadow, the last version the replay put for it
(see ops/replay.py).

Catching up. Live traffic goes on during a rebuild: an aggregate that got a new event after the replay read it
is at a later version in the live table than in the shadow (or absent from the shadow if it is new). Such
aggregates are not comparable yet, so `compare` replays just them again (a catch-up replay, rebuild mode, the
same shadow; the write function skips the versions the shadow already reflects), waits, and compares them
again, up to `catchup_rounds` times. What is still ahead is reported as `behind`.

Swap. DynamoDB cannot rename a table, and the live table's name is in every function's configuration, so the
swap copies: for each aggregate whose live item differs from the shadow's, it writes the shadow's item to the
live table on condition that the live item is still exactly the one compared (same version and updated_at),
or still absent. A live write in between makes the condition fail: that aggregate is caught up and compared
again (up to `catchup_rounds` times) instead of being overwritten. The other way round, the swapped item's
`replays` marks gain the rebuild's id (see MARKS_ATTRIBUTE): a write function that read the item before the
swap fails its own condition and builds on the swapped state. The swap does not touch:
- aggregates the live table holds at a LATER version (`behind`) after the catch-up rounds;
- aggregates the live table holds at an OLDER version, or not at all (`extra`), unless `include_behind`: the
  write function may simply not have caught up yet, and writing ahead of it would make it skip those events
  as already reflected (their outcome in the status table would never be recorded);
- aggregates only the live table holds (`missing`), unless `delete_missing`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from eventlog.aws import dynamodb_client
from eventlog.envelope import utc_now
from eventlog.replays import ReplayDirectory
from eventlog.settings import Settings
from ops import tables
from ops.compare import StateDiff, compare_items, version_of
from ops.errors import OpsError, OpsUsageError, Stopped
from ops.replay import NotCaughtUp, Pace, PutLedger, Say, make_reporter, run_replay, wait_caught_up
from replayer.config import Filters, Limits, ReplayConfig, check_replay_id
from replayer.errors import UsageError
from replayer.report import Reporter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RECORD_PART = "rebuild"
# The state item's list of replays that rewrote it at the same version (eventlog/state.py). Every writer of the
# state table conditions its write on the version AND this list as it read them, so adding the rebuild's id
# when swapping makes a writer that read the item before the swap fail, read again, and build on the swapped
# state instead of writing over it.
MARKS_ATTRIBUTE = "replays"
MAX_MARKS = 16  # as eventlog/projection.py keeps them
ID_PREFIX = "rebuild-"
# Room in a replay id (100 characters) for the catch-up replays' suffix.
MAX_ID_CHARS = 80
MAX_TABLE_NAME = 255  # DynamoDB's limit
RETENTION_DAYS = 30

# created -> replaying -> ready (compared) -> swapping -> swapped | dropped; failed or stopped while replaying.
STATUSES = ("created", "replaying", "stopped", "failed", "ready", "swapping", "swapped", "dropped")
SWAPPABLE = ("ready", "swapping")


@dataclass
class RebuildRecord:
    """A rebuild as the replay_checkpoints table keeps it."""

    rebuild_id: str
    live_table: str
    shadow_table: str
    events_table: str
    stream: str
    status: str
    created_at: str
    updated_at: str = ""
    # Only these aggregates (empty: all); the list itself lives in the main replay's definition.
    subset: bool = False
    catchups: int = 0
    diff: dict[str, int] = field(default_factory=dict)
    swap: dict[str, int] = field(default_factory=dict)
    error: str = ""

    def to_item(self, expires_at: int | None = None) -> dict[str, Any]:
        detail = {
            "live_table": self.live_table,
            "shadow_table": self.shadow_table,
            "events_table": self.events_table,
            "stream": self.stream,
            "subset": self.subset,
            "catchups": self.catchups,
            "diff": self.diff,
            "swap": self.swap,
            "error": self.error,
        }
        item: dict[str, Any] = {
            "replay_id": {"S": self.rebuild_id},
            "part": {"S": RECORD_PART},
            "status": {"S": self.status},
            "shadow_table": {"S": self.shadow_table},
            "created_at": {"S": self.created_at},
            "updated_at": {"S": self.updated_at or self.created_at},
            "detail": {"S": orjson.dumps(detail).decode()},
        }
        if expires_at is not None:
            item["expires_at"] = {"N": str(expires_at)}
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> RebuildRecord:
        detail = orjson.loads(item["detail"]["S"])
        return cls(
            rebuild_id=item["replay_id"]["S"],
            live_table=detail["live_table"],
            shadow_table=detail["shadow_table"],
            events_table=detail["events_table"],
            stream=detail["stream"],
            status=item["status"]["S"],
            created_at=item["created_at"]["S"],
            updated_at=item.get("updated_at", {}).get("S", ""),
            subset=bool(detail.get("subset")),
            catchups=int(detail.get("catchups", 0)),
            diff=dict(detail.get("diff") or {}),
            swap=dict(detail.get("swap") or {}),
            error=str(detail.get("error") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rebuild_id": self.rebuild_id,
            "status": self.status,
            "live_table": self.live_table,
            "shadow_table": self.shadow_table,
            "subset": self.subset,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "catchups": self.catchups,
            "diff": self.diff,
            "swap": self.swap,
            **({"error": self.error} if self.error else {}),
        }


class RebuildStore:
    """Rebuild records in the replay_checkpoints table."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self.table = table

    def get(self, rebuild_id: str) -> RebuildRecord | None:
        response = self._db.get_item(
            TableName=self.table,
            Key={"replay_id": {"S": rebuild_id}, "part": {"S": RECORD_PART}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return RebuildRecord.from_item(item) if item else None

    def create(self, record: RebuildRecord) -> None:
        try:
            self._db.put_item(
                TableName=self.table,
                Item=record.to_item(),
                ConditionExpression="attribute_not_exists(replay_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise OpsError(
                    f"rebuild {record.rebuild_id} already exists; `python -m ops diff {record.rebuild_id}` "
                    "shows it, or choose another --id"
                ) from exc
            raise

    def save(self, record: RebuildRecord, final: bool = False) -> RebuildRecord:
        """Store the record (with a TTL when `final`: swapped or dropped)."""
        record.updated_at = utc_now()
        expires = int(time.time()) + RETENTION_DAYS * 86400 if final else None
        self._db.put_item(TableName=self.table, Item=record.to_item(expires))
        return record

    def list(self) -> list[RebuildRecord]:
        """Every rebuild the table remembers, newest first."""
        pages = self._db.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="part = :p",
            ExpressionAttributeValues={":p": {"S": RECORD_PART}},
        )
        items = [RebuildRecord.from_item(i) for page in pages for i in page.get("Items", [])]
        return sorted(items, key=lambda r: r.created_at, reverse=True)


@dataclass
class Comparison:
    """A diff and the items it was made from (the swap writes from them)."""

    diff: StateDiff
    live: dict[str, dict[str, Any]]
    shadow: dict[str, dict[str, Any]]


@dataclass
class SwapResult:
    """What a swap did."""

    record: RebuildRecord
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    not_swapped: dict[str, list[str]] = field(default_factory=dict)  # reason -> aggregate ids
    shadow_deleted: bool = False

    @property
    def complete(self) -> bool:
        return self.record.status == "swapped"

    def counts(self) -> dict[str, int]:
        out = {"written": len(self.written), "deleted": len(self.deleted)}
        out.update({f"not_swapped_{reason}": len(ids) for reason, ids in self.not_swapped.items()})
        return out

    def to_dict(self, limit: int | None = 20) -> dict[str, Any]:
        cut = slice(None) if limit is None else slice(0, limit)
        return {
            "rebuild_id": self.record.rebuild_id,
            "status": self.record.status,
            **self.counts(),
            "written_ids": self.written[cut],
            "deleted_ids": self.deleted[cut],
            "not_swapped": {reason: ids[cut] for reason, ids in self.not_swapped.items()},
            "shadow_deleted": self.shadow_deleted,
        }


def marked(live: Mapping[str, Any] | None, rebuild_id: str) -> dict[str, str]:
    """The live item's replay marks with this rebuild's id added (the last MAX_MARKS kept)."""
    marks: list[str] = []
    if live is not None and MARKS_ATTRIBUTE in live:
        marks = list(orjson.loads(live[MARKS_ATTRIBUTE]["S"]))
    marks = [m for m in marks if m != rebuild_id] + [rebuild_id]
    return {"S": orjson.dumps(marks[-MAX_MARKS:]).decode()}


def new_rebuild_id(now: datetime | None = None) -> str:
    """`rebuild-YYYYMMDD-HHMMSS-xxxx` (UTC): sorts by start time, and readable in a table name."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{ID_PREFIX}{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def rebuild_id_from(name: str | None) -> str:
    """The rebuild id for `--id name`: the name itself, as the user will type it to diff, swap or drop it
    (validated); a new one for None."""
    if not name:
        return new_rebuild_id()
    return check_rebuild_id(name, "--id")


def check_rebuild_id(rebuild_id: str, what: str = "REBUILD_ID") -> str:
    """`rebuild_id` if it is a valid one: a replay id (it is also its replay's), short enough to leave room
    for the catch-up replays' suffix; OpsUsageError (one line) otherwise."""
    try:
        check_replay_id(rebuild_id)
    except UsageError as exc:
        raise OpsUsageError(
            f"{what} {rebuild_id!r}: use letters, digits, '-' or '_', starting with a letter or digit"
        ) from exc
    if len(rebuild_id) > MAX_ID_CHARS:
        raise OpsUsageError(f"{what} {rebuild_id!r}: at most {MAX_ID_CHARS} characters")
    return rebuild_id


def shadow_name(live_table: str, rebuild_id: str) -> str:
    """`<live state table>-rebuild-<id>`: the pattern the write function's role may write (docs/replays.md).
    An id that starts with `rebuild-` already (the default ones) is not prefixed twice."""
    suffix = rebuild_id if rebuild_id.startswith(ID_PREFIX) else ID_PREFIX + rebuild_id
    return f"{live_table}-{suffix}"


class Rebuilds:
    """The rebuild commands over one stack (its settings). See the module docstring.

    - `tick`: called while waiting for the shadow (or live table) to catch up; tests deliver the playback
      stream to the write handler there. Without it, the stack's own write function must be running.
    - `say`: where progress lines go (one line each).
    """

    def __init__(
        self,
        settings: Settings,
        dynamodb: DynamoDBClient | None = None,
        *,
        say: Say | None = None,
        tick: Callable[[], None] | None = None,
        progress: str = "none",
        pace: Pace | None = None,
        wait_timeout_s: float = 300.0,
        catchup_rounds: int = 3,
        poll_interval_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.dynamodb = dynamodb or dynamodb_client(settings, max_pool_connections=16)
        self.store = RebuildStore(self.dynamodb, settings.replay_checkpoints_table)
        self._say = say or (lambda line: None)
        self._tick = tick
        self._progress = progress
        self._pace = pace or Pace()
        self._timeout = wait_timeout_s
        self._rounds = catchup_rounds
        self._interval = poll_interval_s

    # -- rebuild ---------------------------------------------------------------------------------------

    def rebuild(self, rebuild_id: str | None = None, aggregates: Sequence[str] = ()) -> Comparison:
        """Create a shadow, replay the log (or these aggregates) into it, wait, compare. The record ends
        `ready` with the diff's counts."""
        rebuild_id = check_rebuild_id(rebuild_id) if rebuild_id else new_rebuild_id()
        live = self.settings.state_table
        shadow = shadow_name(live, rebuild_id)
        if len(shadow) > MAX_TABLE_NAME:
            raise OpsUsageError(f"--id {rebuild_id!r}: the shadow table's name {shadow} would be too long")
        if self.store.get(rebuild_id) is None and tables.describe(self.dynamodb, shadow) is not None:
            # `x` and `rebuild-x` share a shadow name; refuse before recording anything.
            raise OpsError(
                f"the shadow table {shadow} exists already (another rebuild's); choose another --id"
            )
        record = RebuildRecord(
            rebuild_id=rebuild_id,
            live_table=live,
            shadow_table=shadow,
            events_table=self.settings.events_table,
            stream=self.settings.playback_stream,
            status="created",
            created_at=utc_now(),
            subset=bool(aggregates),
        )
        filters = self._filters(aggregates)
        self.store.create(record)
        self._say(f"rebuild {rebuild_id}: creating shadow table {record.shadow_table}")
        try:
            tables.create_shadow(self.dynamodb, live, record.shadow_table)
        except OpsError as exc:
            record.status, record.error = "failed", str(exc)
            self.store.save(record)
            raise
        return self._replay_and_compare(record, self._config(record, filters))

    def resume(self, rebuild_id: str) -> Comparison:
        """Continue a rebuild whose replay stopped or failed (from its checkpoints), then wait and compare."""
        record = self._record(rebuild_id)
        if record.status not in ("replaying", "stopped", "failed", "created"):
            raise OpsError(
                f"rebuild {rebuild_id} is {record.status}; `python -m ops diff {rebuild_id}` compares it again"
            )
        if tables.describe(self.dynamodb, record.shadow_table) is None:
            raise OpsError(f"rebuild {rebuild_id}: its shadow table {record.shadow_table} is gone")
        stored = ReplayDirectory(self.dynamodb, self.settings.replay_checkpoints_table).get(rebuild_id)
        if stored is None and record.subset:
            raise OpsError(
                f"rebuild {rebuild_id} stopped before its replay started, and its aggregates were not stored; "
                f"drop it (`python -m ops drop {rebuild_id}`) and start a new one"
            )
        # Its replay has the rebuild's id: resume it from its checkpoints, or start it if it never ran.
        config = self._config(record, Filters())
        if stored is not None:
            config = replace(config, resume=True)
        return self._replay_and_compare(record, config)

    def _replay_and_compare(self, record: RebuildRecord, config: ReplayConfig) -> Comparison:
        record.status, record.error = "replaying", ""
        self.store.save(record)
        ledger = PutLedger()
        what = "continuing the replay" if config.resume else "replaying the log"
        self._say(f"rebuild {record.rebuild_id}: {what} into {record.shadow_table} (mode rebuild)")
        try:
            summary = run_replay(self.settings, config, self._reporter(), ledger)
        except OpsError as exc:
            stopped = isinstance(exc, Stopped)
            record.status = "stopped" if stopped else "failed"
            record.error = str(exc)
            self.store.save(record)
            raise (Stopped if stopped else OpsError)(
                f"{exc}; continue with `python -m ops rebuild --resume {record.rebuild_id}`"
            ) from exc
        self._say(
            f"rebuild {record.rebuild_id}: put {summary.put:,} events of {len(ledger):,} aggregates; "
            "waiting for the write function to project them"
        )
        try:
            self._wait(record.shadow_table, ledger.versions)
        except NotCaughtUp as exc:
            record.error = str(exc)
            self.store.save(record)
            raise NotCaughtUp(
                exc.table,
                exc.lagging,
                exc.timeout_s,
                f"; then `python -m ops rebuild --resume {record.rebuild_id}` compares",
            ) from exc
        return self.compare(record.rebuild_id, record=record)

    # -- compare ---------------------------------------------------------------------------------------

    def compare(self, rebuild_id: str, record: RebuildRecord | None = None) -> Comparison:
        """Compare the shadow with the live table, catching up what moved on; the record becomes `ready`
        (unless it is being swapped) with the diff's counts."""
        after_replay = record is not None
        record = record or self._record(rebuild_id)
        if record.status in ("swapped", "dropped"):
            raise OpsError(f"rebuild {rebuild_id} is {record.status}; its shadow table is gone")
        if not after_replay and record.status not in SWAPPABLE:
            # A shadow whose replay did not finish lacks aggregates nobody would notice: live lacks them too.
            raise OpsError(
                f"rebuild {rebuild_id} is {record.status}: its replay has not finished; "
                f"`python -m ops rebuild --resume {rebuild_id}` finishes it and compares"
            )
        ids = self._subset(record)
        live = tables.load_items(self.dynamodb, record.live_table, ids)
        shadow = tables.load_items(self.dynamodb, record.shadow_table, ids)
        comparison = Comparison(compare_items(live, shadow, ids), live, shadow)
        comparison = self._catch_up(record, comparison)
        record.diff = comparison.diff.counts()
        if record.status not in SWAPPABLE:
            record.status = "ready"
        self.store.save(record)
        return comparison

    def _catch_up(
        self, record: RebuildRecord, comparison: Comparison, only: set[str] | None = None
    ) -> Comparison:
        """Replay again the aggregates the live table has moved on with (or that the shadow lacks), wait, and
        compare them again; up to `catchup_rounds` times. `only`: consider just these aggregates."""
        never_in_log: set[str] = set()
        for _ in range(self._rounds):
            diff = comparison.diff if only is None else comparison.diff.restricted(only)
            lagging = [b.aggregate_id for b in diff.behind] + [
                m for m in diff.missing if m not in never_in_log
            ]
            if not lagging:
                break
            record.catchups += 1
            replay_id = f"{record.rebuild_id}-catchup-{record.catchups}"
            self._say(
                f"rebuild {record.rebuild_id}: {len(lagging):,} aggregate(s) moved on in the live table; "
                f"catching up ({replay_id})"
            )
            self.store.save(record)
            config = replace(
                self._config(record, Filters.build(aggregates=lagging)), replay_id=replay_id, segments=None
            )
            ledger = PutLedger()
            run_replay(self.settings, config, self._reporter(), ledger)
            never_in_log |= {m for m in diff.missing if m not in ledger.versions}
            self._wait(record.shadow_table, ledger.versions)
            comparison = self._recompare(record, comparison, lagging)
        return comparison

    def _recompare(self, record: RebuildRecord, comparison: Comparison, ids: Sequence[str]) -> Comparison:
        live = tables.get_items(self.dynamodb, record.live_table, ids)
        shadow = tables.get_items(self.dynamodb, record.shadow_table, ids)
        fresh = compare_items(live, shadow, ids)
        for aggregate_id in ids:
            for items, source in ((comparison.live, live), (comparison.shadow, shadow)):
                if aggregate_id in source:
                    items[aggregate_id] = source[aggregate_id]
                else:
                    items.pop(aggregate_id, None)
        return Comparison(comparison.diff.replace(fresh, ids), comparison.live, comparison.shadow)

    # -- swap and drop ---------------------------------------------------------------------------------

    def swap(
        self,
        rebuild_id: str,
        *,
        include_behind: bool = False,
        delete_missing: bool = False,
        keep_shadow: bool = False,
    ) -> SwapResult:
        """Apply the shadow to the live table (see the module docstring), then delete the shadow."""
        record = self._record(rebuild_id)
        if record.status not in SWAPPABLE:
            hint = {
                "replaying": f"its replay has not finished: `python -m ops rebuild --resume {rebuild_id}`",
                "stopped": f"its replay stopped: `python -m ops rebuild --resume {rebuild_id}`",
                "failed": f"its replay failed: `python -m ops rebuild --resume {rebuild_id}`",
                "created": f"its replay never ran: `python -m ops rebuild --resume {rebuild_id}`",
            }.get(record.status, "its shadow table is gone")
            raise OpsError(f"rebuild {rebuild_id} is {record.status}, not ready to swap; {hint}")
        if tables.describe(self.dynamodb, record.shadow_table) is None:
            raise OpsError(f"rebuild {rebuild_id}: its shadow table {record.shadow_table} is gone")
        record.status = "swapping"
        self.store.save(record)
        self._say(f"rebuild {rebuild_id}: comparing {record.shadow_table} with {record.live_table}")
        comparison = self.compare(rebuild_id, record=record)
        result = SwapResult(record)
        conflicts: list[str] = []
        only: set[str] | None = None  # the first round applies the whole diff, later ones its conflicts
        for attempt in range(self._rounds + 1):
            conflicts = self._apply(comparison, result, include_behind, delete_missing, only)
            if not conflicts or attempt == self._rounds:
                break
            self._say(
                f"rebuild {rebuild_id}: {len(conflicts):,} live item(s) changed while swapping; comparing again"
            )
            only = set(conflicts)
            comparison = self._catch_up(record, self._recompare(record, comparison, conflicts), only)
        if conflicts:
            result.not_swapped["live_kept_changing"] = sorted(conflicts)
        record.swap = result.counts()
        if conflicts:
            record.error = f"{len(conflicts)} live item(s) kept changing; run swap again"
            self.store.save(record)
            return result
        record.status, record.error = "swapped", ""
        if not keep_shadow:
            result.shadow_deleted = tables.delete_table(self.dynamodb, record.shadow_table)
        self.store.save(record, final=True)
        self._say(
            f"rebuild {rebuild_id}: swapped {len(result.written):,} item(s) into {record.live_table}"
            + (f"; deleted {record.shadow_table}" if result.shadow_deleted else "")
        )
        return result

    def _apply(
        self,
        comparison: Comparison,
        result: SwapResult,
        include_behind: bool,
        delete_missing: bool,
        only: set[str] | None = None,
    ) -> list[str]:
        """Write (or delete) what the comparison calls for (for the aggregates in `only`, when given); return
        the aggregates whose condition failed."""
        diff = comparison.diff if only is None else comparison.diff.restricted(only)
        writes: list[str] = []
        skipped: dict[str, list[str]] = {}
        for difference in diff.differ:
            if difference.live_version == difference.shadow_version or include_behind:
                writes.append(difference.aggregate_id)
            else:
                skipped.setdefault("live_older", []).append(difference.aggregate_id)
        if include_behind:
            writes.extend(diff.extra)
        elif diff.extra:
            skipped["live_lacks"] = list(diff.extra)
        if diff.behind:
            skipped["live_ahead"] = [b.aggregate_id for b in diff.behind]
        deletes = list(diff.missing) if delete_missing else []
        if diff.missing and not delete_missing:
            skipped["only_live"] = list(diff.missing)
        now = utc_now()

        def write(aggregate_id: str) -> tuple[str, bool]:
            item = dict(comparison.shadow[aggregate_id])
            item["updated_at"] = {"S": now}
            item[MARKS_ATTRIBUTE] = marked(comparison.live.get(aggregate_id), result.record.rebuild_id)
            return aggregate_id, self._conditional(
                "put", result.record.live_table, aggregate_id, comparison.live.get(aggregate_id), item
            )

        def delete(aggregate_id: str) -> tuple[str, bool]:
            return aggregate_id, self._conditional(
                "delete", result.record.live_table, aggregate_id, comparison.live[aggregate_id], None
            )

        conflicts: list[str] = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            for aggregate_id, ok in pool.map(write, writes):
                (result.written if ok else conflicts).append(aggregate_id)
            for aggregate_id, ok in pool.map(delete, deletes):
                (result.deleted if ok else conflicts).append(aggregate_id)
        for reason, ids in skipped.items():
            result.not_swapped.setdefault(reason, []).extend(ids)
        result.written.sort()
        result.deleted.sort()
        return conflicts

    def _conditional(
        self,
        action: str,
        table: str,
        aggregate_id: str,
        live: Mapping[str, Any] | None,
        item: Mapping[str, Any] | None,
    ) -> bool:
        """Put `item` (or delete) on condition that the live item is still `live` (or still absent)."""
        kwargs: dict[str, Any] = {"TableName": table}
        if live is None:
            kwargs["ConditionExpression"] = "attribute_not_exists(aggregate_id)"
        else:
            kwargs["ConditionExpression"] = "#v = :v AND updated_at = :u"
            kwargs["ExpressionAttributeNames"] = {"#v": "version"}
            kwargs["ExpressionAttributeValues"] = {
                ":v": {"N": str(version_of(live))},
                ":u": live.get("updated_at") or {"S": ""},
            }
        try:
            if action == "put":
                self.dynamodb.put_item(Item=dict(item or {}), **kwargs)
            else:
                self.dynamodb.delete_item(Key={"aggregate_id": {"S": aggregate_id}}, **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def drop(self, rebuild_id: str, force: bool = False) -> RebuildRecord:
        """Delete the shadow table without swapping; the record becomes `dropped`.

        A rebuild whose replay did not finish may still have events on the playback stream; the write function
        fails on an event whose shadow table is gone (and retries it until the record expires), so such a
        rebuild is dropped only with `force`."""
        record = self._record(rebuild_id)
        if record.status == "swapped":
            raise OpsError(f"rebuild {rebuild_id} is swapped already (its shadow table is gone)")
        if record.status in ("created", "replaying", "stopped", "failed") and not force:
            raise OpsError(
                f"rebuild {rebuild_id} is {record.status}: events it put may still be on the playback stream, "
                f"and the write function fails on them once {record.shadow_table} is gone; let them be "
                f"projected (`python -m ops rebuild --resume {rebuild_id}` waits for it), or pass --force"
            )
        gone = tables.delete_table(self.dynamodb, record.shadow_table)
        record.status = "dropped"
        self.store.save(record, final=True)
        self._say(
            f"rebuild {rebuild_id}: "
            + (f"deleted {record.shadow_table}" if gone else f"{record.shadow_table} was already gone")
        )
        return record

    def records(self) -> list[RebuildRecord]:
        """Every rebuild the checkpoint table remembers, newest first."""
        return self.store.list()

    # -- helpers ---------------------------------------------------------------------------------------

    def _record(self, rebuild_id: str) -> RebuildRecord:
        record = self.store.get(rebuild_id)
        if record is None:
            raise OpsError(
                f"no rebuild {rebuild_id} in {self.settings.replay_checkpoints_table} "
                "(`python -m ops list` shows the known ones)"
            )
        return record

    def _subset(self, record: RebuildRecord) -> list[str] | None:
        """The aggregates a subset rebuild covers (from its replay's definition); None for all."""
        if not record.subset:
            return None
        stored = ReplayDirectory(self.dynamodb, self.settings.replay_checkpoints_table).get(record.rebuild_id)
        if stored is None:
            raise OpsError(f"rebuild {record.rebuild_id}: its replay's definition is gone (expired?)")
        return list(stored.filters.get("aggregates") or [])

    def _filters(self, aggregates: Iterable[str]) -> Filters:
        try:
            return Filters.build(aggregates=aggregates)
        except UsageError as exc:
            raise OpsUsageError(str(exc)) from exc

    def _config(self, record: RebuildRecord, filters: Filters) -> ReplayConfig:
        try:
            return ReplayConfig(
                events_table=record.events_table,
                stream=record.stream,
                checkpoint_table=self.settings.replay_checkpoints_table,
                filters=filters,
                mode="rebuild",
                replay_id=record.rebuild_id,
                segments=self._pace.segments,
                limits=Limits(rate=self._pace.rate),
                concurrency=self._pace.concurrency,
                state_table=record.shadow_table,
                spread_shards=self._pace.spread_shards,
            )
        except UsageError as exc:
            raise OpsUsageError(str(exc)) from exc

    def _reporter(self) -> Reporter:
        return make_reporter(self._progress)

    def _wait(self, table: str, targets: Mapping[str, int]) -> None:
        wait_caught_up(
            self.dynamodb,
            table,
            targets,
            timeout_s=self._timeout,
            interval_s=self._interval,
            tick=self._tick,
            say=self._say,
        )
