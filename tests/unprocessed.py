"""Make a real DynamoDB client's batch calls come back partly unprocessed, as DynamoDB does when throttled.

moto never answers with UnprocessedItems or UnprocessedKeys, so a test registers botocore event handlers on the
client (boto3 or aiobotocore: both emit the same events) and the whole client path runs for real:

- `provide-client-params`: the requests (or keys) this call holds back are taken out before the request is
  built, so the server never sees them (nothing is written or read for them);
- `after-call`: they are put into the parsed answer's UnprocessedItems / UnprocessedKeys.

`everything=True` answers every call with all of its requests unprocessed (and no Responses). A request must
carry at least one item, so in that mode the server does see the call (a write is then done and reported not
done: harmless for the tests that use it, which only look for the error).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_ids = itertools.count()


class Unprocessed:
    """Hold back up to `withhold` requests (BatchWriteItem) or keys (BatchGetItem) of each of the first `calls`
    calls (every call when None); at least one of a call's requests always goes through, as DynamoDB makes
    progress. Or, with `everything`, report every call's requests unprocessed."""

    def __init__(
        self,
        operation: str,
        *,
        withhold: int = 0,
        calls: int | None = None,
        everything: bool = False,
    ) -> None:
        assert operation in ("BatchWriteItem", "BatchGetItem")
        self.operation = operation
        self.withhold = withhold
        self.affected_calls = calls
        self.everything = everything
        self.calls = 0  # calls made
        self.sizes: list[int] = []  # requests (or keys) each call carried, as the caller made it
        self.sent: list[Any] = []  # every request (or key) that reached the server
        self.held: list[int] = []  # how many were held back, call by call

    def _affects(self) -> bool:
        return self.affected_calls is None or self.calls <= self.affected_calls

    def _provide(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls += 1
        items = params["RequestItems"]
        assert len(items) == 1, "the batch helper sends one table a call"
        ((table, wanted),) = items.items()
        entries = list(wanted) if self.operation == "BatchWriteItem" else list(wanted["Keys"])
        self.sizes.append(len(entries))
        hold = 0
        if not self.everything and self._affects():
            hold = min(self.withhold, len(entries) - 1)
        kept, held = entries[: len(entries) - hold], entries[len(entries) - hold :]
        if self.everything and self._affects():
            held = entries
        self.held.append(len(held))
        self.sent.extend(kept)
        context["unprocessed"] = (table, held, wanted)
        if not hold:
            return params
        if self.operation == "BatchWriteItem":
            trimmed: Any = kept
        else:
            trimmed = {**wanted, "Keys": kept}
        return {**params, "RequestItems": {table: trimmed}}  # a new dict: the caller's own stays as it was

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        table, held, wanted = context.pop("unprocessed", (None, [], None))
        if not held or "Error" in parsed:
            return
        if self.operation == "BatchWriteItem":
            parsed["UnprocessedItems"] = {table: held}
        else:
            parsed["UnprocessedKeys"] = {table: {**wanted, "Keys": held}}
            if self.everything:
                parsed["Responses"] = {table: []}

    @contextmanager
    def on(self, client: Any) -> Iterator[Unprocessed]:
        """Active on `client` inside the block (the handlers are removed again after it)."""
        events = client.meta.events
        n = next(_ids)
        handlers = (
            (f"provide-client-params.dynamodb.{self.operation}", self._provide, f"unprocessed-provide-{n}"),
            (f"after-call.dynamodb.{self.operation}", self._after, f"unprocessed-after-{n}"),
        )
        for event, handler, unique_id in handlers:
            events.register(event, handler, unique_id=unique_id)
        try:
            yield self
        finally:
            for event, handler, unique_id in handlers:
                events.unregister(event, handler, unique_id=unique_id)


def write_keys(requests: list[Any], key: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The keys (as tuples of strings) of PutRequests, to count what reached the server."""
    out = []
    for request in requests:
        item = request["PutRequest"]["Item"]
        out.append(tuple(next(iter(item[name].values())) for name in key))
    return out
