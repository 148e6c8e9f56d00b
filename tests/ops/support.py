"""Helpers for the operator commands' tests: a live history through the real handlers, and the playback
stream delivered to the write function on demand (the `tick` a rebuild calls while it waits).

The write function projects a rebuild's events into the state table its definition names (recording no
outcomes); `Playback` hands the stream to the real write handler, or to another handler a test gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devstack.lambda_runtime import LambdaContext, invoke
from eventlog.settings import Settings
from tests.support import KinesisReader, Pipeline, kinesis_id, post_event

Handler = Callable[[dict[str, Any], Any], Any]


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
