"""Helpers for the operator commands' tests: a live history through the real handlers, and the playback
stream delivered to the write function on demand (the `tick` a rebuild calls while it waits).

`write_rebuilds` is what the write function must do with a rebuild's events (docs/replays.md): project them
into the definition's `state_table`, recording no outcomes. Until the real write handler does it, tests use
`standin_write` (that, and the real handler for everything else); `WRITE` says which one is in use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from devstack.lambda_runtime import LambdaContext, invoke
from domain import DOMAIN
from eventlog.aws import dynamodb_client
from eventlog.codec import event_from_data, kinesis_record_data
from eventlog.projection import Projector
from eventlog.replays import ReplayDirectory
from eventlog.settings import Settings
from eventlog.state import StateStore
from eventlog.store import EventStore
from handlers import write as write_handler
from tests.support import KinesisReader, Pipeline, kinesis_id, post_event

Handler = Callable[[dict[str, Any], Any], Any]


@functools.cache
def _client(endpoint_url: str | None) -> Any:
    return dynamodb_client(Settings.from_env())


def standin_write(event: dict[str, Any], context: Any) -> Any:
    """The write function's rebuild mode as the design says it: rebuild events into the definition's state
    table (no outcomes recorded); every other record to the real handler."""
    records = event.get("Records") or []
    settings = Settings.from_env()
    client = _client(settings.endpoint_url)
    directory = ReplayDirectory(client, settings.replay_checkpoints_table)
    for index, record in enumerate(records):
        if record.get("eventSource") != "aws:kinesis":
            return write_handler.handler({"Records": records[index:]}, context)
        decoded = event_from_data(kinesis_record_data(record))
        if decoded.replay is None or decoded.replay.mode != "rebuild":
            answer = write_handler.handler({"Records": [record]}, context)
            if answer.get("batchItemFailures"):
                return {"batchItemFailures": [{"itemIdentifier": kinesis_id(record)}]}
            continue
        definition = directory.get(decoded.replay.replay_id)
        table = (definition.state_table if definition else None) or settings.state_table
        projector = Projector(
            EventStore(client, settings.events_table, settings.event_status_table),
            StateStore(client, table),
            DOMAIN.apply,
            statuses=None,
        )
        try:
            projector.project(decoded)
        except Exception:
            return {"batchItemFailures": [{"itemIdentifier": kinesis_id(record)}]}
    return {"batchItemFailures": []}


class Playback:
    """Delivers new playback stream records to the write function, one batch per shard, retried from a
    reported failure as an event source mapping would."""

    def __init__(self, settings: Settings, handler: Handler | None = None, repeat: bool = False) -> None:
        self.reader = KinesisReader(settings, settings.playback_stream)
        self.handler = handler
        self.repeat = repeat
        self.delivered = 0

    def __call__(self) -> None:
        for shard_id, records in self.reader.read().items():
            # A repeated delivery (a retried batch, a record the replayer put twice) must change nothing.
            for _ in range(2 if self.repeat and records else 1):
                self._deliver(shard_id, records)

    def _deliver(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        if records:
            pending = records
            for _ in range(20):
                if not pending:
                    break
                event = self.reader.event(shard_id, pending)
                if self.handler is None:
                    answer = invoke("write", event, prefix="es-test")
                else:
                    answer = self.handler(event, LambdaContext("es-test-write", "arn", 1024, 60))
                failures = (answer or {}).get("batchItemFailures") or []
                if not failures:
                    self.delivered += len(pending)
                    pending = []
                    break
                ids = [kinesis_id(r) for r in pending]
                first = min(ids.index(f["itemIdentifier"]) for f in failures)
                self.delivered += first
                pending = pending[first:]
            else:
                raise AssertionError("the write function kept failing on the playback stream")


def live_history(settings: Settings, requests: list[tuple[str, str, dict[str, Any]]]) -> Pipeline:
    """POST each (aggregate, type, payload) to the API and run pump and write until nothing moves."""
    for aggregate, type_, payload in requests:
        response = post_event(aggregate, {"type": type_, "payload": payload})
        assert response.status == 202, response.body
    pipeline = Pipeline(settings)
    pipeline.settle()
    return pipeline


# The write function used for the playback stream in these tests (None: the real handler, by its topology).
WRITE: Handler | None = standin_write
