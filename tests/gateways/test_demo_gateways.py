"""The demo's gateways part says so when a replay reaches an external system (property 5, as the demo shows it).

That the part runs and shows what it says is covered by the whole demo (tests/devstack/test_stack.py)."""

from __future__ import annotations

import io
import os
import urllib.request
import uuid
from typing import Any

import orjson
import pytest

from devstack.demo import Client, Demo, DemoError
from devstack.demo_gateways import section
from devstack.lambda_runtime import load_handler
from devstack.stack import LocalStack
from eventlog.settings import Settings
from eventlog.topology import function_spec


def test_the_part_fails_when_a_feature_replay_reaches_the_ledger(settings: Settings) -> None:
    real = load_handler(function_spec("service"))

    def service_without_gateways(event: dict[str, Any], context: Any) -> Any:
        # A service that calls the ledger directly for replayed events too: what gateways exist to prevent.
        for record in event.get("Records") or []:
            if record.get("eventSource") == "aws:kinesis":
                entry = {"entry_id": str(uuid.uuid4()), "account_id": "x", "amount": 1, "reporting_amount": 1}
                request = urllib.request.Request(
                    f"{os.environ['ES_LEDGER_EXPORT_URL']}/entries", data=orjson.dumps(entry), method="POST"
                )
                urllib.request.urlopen(request, timeout=5).close()
        return real(event, context)

    with LocalStack(
        port=0,
        endpoint_url=settings.endpoint_url,
        prefix=settings.prefix,
        handlers={"service": service_without_gateways},
    ) as stack:
        demo = Demo(Client(stack.url, io.StringIO()), timeout=10.0, environment=dict(os.environ))
        with pytest.raises(DemoError, match="a feature replay reached an external system"):
            section(demo)
