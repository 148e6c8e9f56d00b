"""A test environment from a subset of the log: its own tables and streams (a name prefix), its own log, its
own state.

    python -m ops test-env --prefix es-test-1 --aggregate acct-1 --aggregate acct-2
    python -m ops test-env --prefix es-test-2 --since 2026-11-01T00:00:00Z --until 2026-11-08T00:00:00Z
    python -m ops test-env --prefix es-test-3 --until 2026-11-01T00:00:00Z

What is copied. A log is a list of gapless histories, each from version 1: an account's deposits mean nothing
without its opening. So a subset is a set of aggregates, each with a PREFIX of its history:
- `--aggregate ID` (or `--aggregates-file`): those aggregates, their whole history;
- `--until T`: every aggregate (or the chosen ones) up to T: from version 1 through the last event recorded
  before T, stopping at the first one recorded at or after T (so a clock that stepped back between two
  commits can never leave a hole);
- `--since S [--until T]`: the aggregates that had an event recorded in [S, T), each from version 1 (not from
  S: the events before S are what the later ones build on) through T.
In the test environment each copied aggregate therefore has versions 1..k with no gap, the same event ids,
types, payloads, times and versions as in the source log.

How. The tables and streams are created from `eventlog.resources` under the new prefix (`create_resources`,
`Settings.with_prefix`) on the same endpoint, unless they exist already (on AWS a test environment is a Pulumi
stack of its own, deployed first). Each copied event is written to the new events table together with a
`committed` status entry, in one transaction, on condition that its slot is free; running the command again
finds the events already there and copies nothing twice. Its gateway recordings (what the source's service
function sent and was answered for those events) are copied too, so the test environment's own service
function, which looks for a recording before it calls out, sees the copied history as done and calls no
external system for it. Then the state is built by the write function's code (`eventlog.projection` with the
domain's rules, as `handlers/write.py` runs it), outcomes recorded in the new status table; or, with
`--no-state`, left to the test environment's own write function (which projects the new events table's change
stream when its stack runs).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from domain import from_environment
from eventlog.aws import dynamodb_client, kinesis_client
from eventlog.batch import BatchIncomplete, put_items
from eventlog.codec import item_to_event
from eventlog.envelope import canonical_timestamp
from eventlog.projection import Projector
from eventlog.provision import create_resources
from eventlog.resources import STREAMS, TABLES, table_spec
from eventlog.settings import Settings, check_prefix
from eventlog.state import StateStore
from eventlog.status import (
    NOT_FINAL_CONDITION,
    NOT_FINAL_NAMES,
    NOT_FINAL_VALUES,
    StatusStore,
    committed_item,
    request_fingerprint,
)
from eventlog.store import EventStore
from eventlog.topology import MAPPINGS
from ops import tables
from ops.errors import OpsError, OpsUsageError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

Item = dict[str, Any]
Say = Callable[[str], None]
# Events per transaction: each event is two actions (the event and its status), and a transaction takes 100.
_EVENTS_PER_TRANSACTION = 50
RECORDINGS_TABLE = "gateway_recordings"


@dataclass(frozen=True)
class Selection:
    """Which part of the log a test environment gets (see the module docstring)."""

    aggregates: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None

    @classmethod
    def build(
        cls, aggregates: Iterable[str] = (), since: str | None = None, until: str | None = None
    ) -> Selection:
        """Validate (OpsUsageError naming the flag)."""
        ids = tuple(dict.fromkeys(a.strip() for a in aggregates if a.strip()))
        since_c, until_c = _timestamp(since, "--since"), _timestamp(until, "--until")
        if since_c and until_c and since_c >= until_c:
            raise OpsUsageError(f"--since {since} is not before --until {until}")
        if not (ids or since_c or until_c):
            raise OpsUsageError(
                "choose a subset: --aggregate ID (or --aggregates-file), --since TIME [--until TIME] (the "
                "aggregates active then), or --until TIME (everything up to then)"
            )
        return cls(ids, since_c, until_c)

    def covers(self, recorded_at: str) -> bool:
        """Whether a time is in [since, until) (canonical timestamps compare as strings)."""
        return (self.since is None or recorded_at >= self.since) and (
            self.until is None or recorded_at < self.until
        )

    def describe(self) -> str:
        parts = []
        if self.aggregates:
            parts.append(f"{len(self.aggregates)} aggregate(s)")
        if self.since:
            parts.append(f"active since {self.since}")
        parts.append(f"up to {self.until}" if self.until else "whole histories")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"aggregates": list(self.aggregates), "since": self.since, "until": self.until}


@dataclass
class TestEnvironment:
    """What `create` did."""

    __test__ = False  # not a pytest test class

    prefix: str
    settings: Settings
    selection: Selection
    created: list[str] = field(default_factory=list)  # tables and streams made by this run
    aggregates: int = 0
    events: int = 0  # events of the subset
    copied: int = 0  # ... written by this run (the rest were there already)
    recordings: int = 0
    states: int = 0  # state items written (0 with --no-state)
    versions: dict[str, int] = field(default_factory=dict)  # aggregate -> last version copied

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        ids = sorted(self.versions)
        return {
            "prefix": self.prefix,
            "selection": self.selection.to_dict(),
            "created": self.created,
            "aggregates": self.aggregates,
            "events": self.events,
            "copied": self.copied,
            "recordings": self.recordings,
            "states": self.states,
            "tables": {t.key: self.settings.table(t.key) for t in TABLES},
            "streams": {s.key: self.settings.stream(s.key) for s in STREAMS},
            "versions": {a: self.versions[a] for a in (ids if limit is None else ids[:limit])},
        }


def target_settings(source: Settings, prefix: str) -> Settings:
    """The test environment's names: `source`'s endpoint and region with every name from `prefix`.
    OpsUsageError when a name would be one of the source's."""
    try:
        target = source.with_prefix(check_prefix(prefix))  # the same check the settings make
    except ValueError as exc:
        raise OpsUsageError(f"--prefix {prefix!r}: {exc}") from exc
    own = {source.table(t.key) for t in TABLES} | {source.stream(s.key) for s in STREAMS}
    clash = sorted(({target.table(t.key) for t in TABLES} | {target.stream(s.key) for s in STREAMS}) & own)
    if clash:
        raise OpsUsageError(f"--prefix {prefix}: {', '.join(clash)} would be the source stack's own")
    return target


class TestEnvironments:
    """Creates test environments from the log of the stack `source` names."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        source: Settings,
        dynamodb: DynamoDBClient | None = None,
        *,
        say: Say | None = None,
        threads: int = 8,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.source = source
        self.dynamodb = dynamodb or dynamodb_client(source, max_pool_connections=max(10, threads * 2))
        self._say = say or (lambda line: None)
        self._threads = threads
        self._environ = os.environ if environ is None else environ
        self._kinesis: KinesisClient | None = None

    def create(
        self,
        prefix: str,
        selection: Selection,
        *,
        create: bool | None = None,
        build_state: bool = True,
    ) -> TestEnvironment:
        """Create (or fill again) the test environment `prefix` with `selection` (see the module docstring).
        `create`: make missing tables and streams (default: on an emulator endpoint only; on AWS the test
        environment is a stack of its own)."""
        target = target_settings(self.source, prefix)
        env = TestEnvironment(prefix, target, selection)
        if create is None:
            create = self.source.endpoint_url is not None
        env.created = self._provision(target, create)
        self._say(
            f"test environment {prefix}: reading {selection.describe()} from {self.source.events_table}"
        )
        histories = self.select(selection)
        env.aggregates = len(histories)
        env.events = sum(len(h) for h in histories.values())
        env.versions = {a: len(h) for a, h in histories.items()}
        self._say(
            f"test environment {prefix}: copying {env.events:,} events of {env.aggregates:,} aggregates"
        )
        env.copied = self._copy(target, histories)
        self._check_gapless(target, env.versions)
        env.recordings = self._copy_recordings(target, histories)
        if build_state:
            env.states = self._build_state(target, histories)
        return env

    # -- choosing -----------------------------------------------------------------------------------------

    def select(self, selection: Selection) -> dict[str, list[Item]]:
        """Per chosen aggregate, its events from version 1 through the selection's end, in version order."""
        if selection.aggregates:
            with ThreadPoolExecutor(max_workers=self._threads) as pool:
                found = dict(
                    zip(selection.aggregates, pool.map(self._history, selection.aggregates), strict=True)
                )
            histories = {a: items for a, items in found.items() if items}
        else:
            histories = self._scan_histories()
        out: dict[str, list[Item]] = {}
        for aggregate_id, items in sorted(histories.items()):
            prefix = _prefix(items, selection.until)
            if not prefix:
                continue
            if selection.since and not any(selection.covers(item["recorded_at"]["S"]) for item in prefix):
                continue
            out[aggregate_id] = prefix
        return out

    def _history(self, aggregate_id: str) -> list[Item]:
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.source.events_table,
            KeyConditionExpression="aggregate_id = :a",
            ExpressionAttributeValues={":a": {"S": aggregate_id}},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page.get("Items", [])]

    def _scan_histories(self, segments: int = 4) -> dict[str, list[Item]]:
        def segment(index: int) -> list[Item]:
            pages = self.dynamodb.get_paginator("scan").paginate(
                TableName=self.source.events_table,
                Segment=index,
                TotalSegments=segments,
                ConsistentRead=True,
            )
            return [item for page in pages for item in page.get("Items", [])]

        histories: dict[str, list[Item]] = {}
        with ThreadPoolExecutor(max_workers=segments) as pool:
            for items in pool.map(segment, range(segments)):
                for item in items:
                    histories.setdefault(item["aggregate_id"]["S"], []).append(item)
        return histories

    # -- writing ------------------------------------------------------------------------------------------

    def _provision(self, target: Settings, create: bool) -> list[str]:
        names = [(target.table(t.key), "table") for t in TABLES] + [
            (target.stream(s.key), "stream") for s in STREAMS
        ]
        missing = [name for name, kind in names if not self._exists(name, kind, target)]
        if not missing:
            return []
        if not create:
            raise OpsError(
                f"{', '.join(missing)} not found; deploy the test environment's stack first (docs/replays.md), "
                "or pass --create"
            )
        self._say(f"test environment {target.prefix}: creating {len(missing)} table(s) and stream(s)")
        create_resources(target, self.dynamodb, kinesis_client(target))
        return missing

    def _exists(self, name: str, kind: str, target: Settings) -> bool:
        if kind == "table":
            return tables.describe(self.dynamodb, name) is not None
        if self._kinesis is None:
            self._kinesis = kinesis_client(target)
        try:
            self._kinesis.describe_stream_summary(StreamName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return False
            raise
        return True

    def _copy(self, target: Settings, histories: Mapping[str, list[Item]]) -> int:
        """Write every event with its committed status, 50 a transaction; returns how many were new."""
        chunks = [
            items[i : i + _EVENTS_PER_TRANSACTION]
            for items in histories.values()
            for i in range(0, len(items), _EVENTS_PER_TRANSACTION)
        ]
        with ThreadPoolExecutor(max_workers=self._threads) as pool:
            return sum(pool.map(lambda chunk: self._copy_chunk(target, chunk), chunks))

    def _copy_chunk(self, target: Settings, items: Sequence[Item]) -> int:
        try:
            actions: Any = [a for i in items for a in _actions(target, i)]
            self.dynamodb.transact_write_items(TransactItems=actions)
            return len(items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
        if len(items) == 1:
            return self._already_there(target, items[0])
        # Some are there already (a run before this one): one by one, to tell which.
        return sum(self._copy_chunk(target, [item]) for item in items)

    def _already_there(self, target: Settings, item: Item) -> int:
        """The event's slot was taken: fine if by the same event (copied before), an error otherwise."""
        key = {"aggregate_id": item["aggregate_id"], "version": item["version"]}
        there = self.dynamodb.get_item(TableName=target.events_table, Key=key, ConsistentRead=True).get(
            "Item"
        )
        if there is not None and there["event_id"] == item["event_id"]:
            return 0
        if there is None:
            raise OpsError(
                f"event {item['event_id']['S']} has a status in {target.event_status_table} but is not in "
                f"{target.events_table}; the test environment {target.prefix} was written by something else"
            )
        raise OpsError(
            f"{target.events_table} already holds another event at {item['aggregate_id']['S']} "
            f"v{item['version']['N']}; use a new --prefix for this subset"
        )

    def _check_gapless(self, target: Settings, versions: Mapping[str, int]) -> None:
        store = EventStore(self.dynamodb, target.events_table, target.event_status_table)
        with ThreadPoolExecutor(max_workers=self._threads) as pool:
            heads = dict(zip(versions, pool.map(store.head_version, versions), strict=True))
        wrong = {a: (heads[a], v) for a, v in versions.items() if heads[a] < v}
        if wrong:
            a, (head, want) = next(iter(sorted(wrong.items())))
            raise OpsError(f"{target.events_table}: {a} is at v{head} after copying v1..v{want}")

    def _copy_recordings(self, target: Settings, histories: Mapping[str, list[Item]]) -> int:
        """The source's gateway recordings of the copied events (when the stack has that table)."""
        if RECORDINGS_TABLE not in {t.key for t in TABLES}:
            return 0
        source_table, target_table = self.source.table(RECORDINGS_TABLE), target.table(RECORDINGS_TABLE)
        event_ids = [item["event_id"]["S"] for items in histories.values() for item in items]

        def recordings(event_id: str) -> list[Item]:
            # Finished calls only: a `pending` one is an update whose outcome the source does not know yet, and
            # the test environment's own service would send it again, to whatever system it is pointed at.
            found: list[Item] = []
            paginator = self.dynamodb.get_paginator("query")
            for page in paginator.paginate(
                TableName=source_table,
                KeyConditionExpression="event_id = :e",
                ExpressionAttributeValues={":e": {"S": event_id}},
            ):
                found.extend(i for i in page.get("Items", []) if i.get("status", {}).get("S") != "pending")
            return found

        with ThreadPoolExecutor(max_workers=self._threads) as pool:
            found = [item for items in pool.map(recordings, event_ids) for item in items]
        try:
            put_items(self.dynamodb, target_table, found, key=table_spec(RECORDINGS_TABLE).key_names)
        except BatchIncomplete as exc:
            raise OpsError(f"test environment {target.prefix}: copying gateway recordings: {exc}") from exc
        return len(found)

    def _build_state(self, target: Settings, histories: Mapping[str, list[Item]]) -> int:
        """Project the copied histories into the new state table with the write function's code and rules."""
        self._say(f"test environment {target.prefix}: building its state ({len(histories):,} aggregates)")
        projector = Projector(
            EventStore(self.dynamodb, target.events_table, target.event_status_table),
            StateStore(self.dynamodb, target.state_table),
            from_environment(self._environ),
            statuses=StatusStore(self.dynamodb, target.event_status_table),
            workers=self._threads,
        )
        events = [item_to_event(item) for items in histories.values() for item in items]
        batch = projector.project_batch(events)
        if batch.first_failed is not None:
            failed = events[batch.first_failed]
            raise OpsError(
                f"building the state of {failed.aggregate_id} in {target.state_table} failed: {batch.error}"
            )
        return len(histories)


def _prefix(items: list[Item], until: str | None) -> list[Item]:
    """Versions 1, 2, ... in order, stopping at the first missing one or the first recorded at/after `until`."""
    by_version = {int(item["version"]["N"]): item for item in items}
    out: list[Item] = []
    version = 1
    while version in by_version:
        item = by_version[version]
        if until is not None and item["recorded_at"]["S"] >= until:
            break
        out.append(item)
        version += 1
    return out


def _actions(target: Settings, item: Item) -> list[dict[str, Any]]:
    payload = orjson.loads(item["payload"]["S"])
    recorded_at = item["recorded_at"]["S"]
    status = committed_item(
        item["event_id"]["S"],
        item["aggregate_id"]["S"],
        item["type"]["S"],
        recorded_at,  # accepted at: the source's accept time is not in the log; its recording time is
        request_fingerprint(item["aggregate_id"]["S"], item["type"]["S"], payload, None),
        int(item["version"]["N"]),
        recorded_at,
    )
    return [
        {
            "Put": {
                "TableName": target.events_table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(version)",
            }
        },
        {
            "Put": {
                "TableName": target.event_status_table,
                "Item": status,
                "ConditionExpression": NOT_FINAL_CONDITION,
                "ExpressionAttributeNames": NOT_FINAL_NAMES,
                "ExpressionAttributeValues": NOT_FINAL_VALUES,
            }
        },
    ]


def _timestamp(text: str | None, flag: str) -> str | None:
    if not text:
        return None
    try:
        return canonical_timestamp(text)
    except ValueError as exc:
        raise OpsUsageError(f"{flag} {text!r}: not an ISO 8601 time with a zone ({exc})") from exc


def serve(
    target: Settings,
    port: int,
    stop: threading.Event,
    say: Say,
    host: str = "127.0.0.1",
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the test environment's stack locally (handlers, stream pollers, the API on `host:port`) on its
    endpoint until `stop` is set. Its events table's change stream is read from LATEST: the copied history is
    projected already, and its consumers must not take it for new events (the service function would export
    it again)."""
    from devstack.stack import LocalStack, StackError

    mappings = tuple(
        replace(m, starting_position="LATEST") if m.source_kind == "dynamodb" else m for m in MAPPINGS
    )
    stack = LocalStack(
        host=host, port=port, endpoint_url=target.endpoint_url, prefix=target.prefix, mappings=mappings
    )
    # The stack takes each table's and stream's name from its own variable when set (ES_EVENTS_TABLE, ...),
    # and a shell that sourced the source stack's exports has them all: name the test environment's instead.
    saved = {name: os.environ.get(name) for name in target.environment()}
    os.environ.update({k: v for k, v in target.environment().items() if k.startswith("ES_")})
    try:
        stack.start()
    except StackError as exc:
        _restore(saved)
        raise OpsError(str(exc)) from exc
    try:
        say(f"test environment {target.prefix}: API {stack.url} (Ctrl-C stops it)")
        for line in stack.export_lines():
            say(f"  {line}")
        if ready is not None:
            ready(stack.url)
        while not stop.wait(0.2):
            pass
    finally:
        stack.stop()
        _restore(saved)


def _restore(saved: Mapping[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
