"""Invoking a handler in-process the way the Lambda runtime does: the handler named in the topology, the
event as AWS shapes it, and a context object with the attributes Lambda's has."""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.shapes import function_arn
from eventlog.topology import FunctionSpec, function_spec

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers (and Powertools) read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "devstack"
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        left = self.timeout_s - (time.monotonic() - self._started)
        return max(0, int(left * 1000))


def load_handler(spec: FunctionSpec) -> Handler:
    module_name, attr = spec.handler.rsplit(".", 1)
    handler: Handler = getattr(importlib.import_module(module_name), attr)
    return handler


def make_context(spec: FunctionSpec, prefix: str, region: str) -> LambdaContext:
    name = f"{prefix}-{spec.key}"
    return LambdaContext(
        function_name=name,
        invoked_function_arn=function_arn(region, name),
        memory_limit_in_mb=spec.memory_mb,
        timeout_s=spec.timeout_s,
    )


def invoke(function: str, event: dict[str, Any], prefix: str = "es-local", region: str = "us-east-1") -> Any:
    """Call the function's handler with `event` and a fresh context, as one Lambda invocation."""
    spec = function_spec(function)
    return load_handler(spec)(event, make_context(spec, prefix, region))


class LocalFunction:
    """One Lambda function run in-process: its handler, a fresh context per invocation, and at most one
    invocation at a time.

    Lambda runs one invocation per container at a time, and Powertools' Logger and Metrics keep
    per-invocation state in module globals; two threads inside one handler at once would mix that state
    (a metric flushed under the other request's dimensions, one request's keys in the other's logs). So
    every caller (the stream pollers and the HTTP server alike) goes through this lock.
    """

    def __init__(self, spec: FunctionSpec, handler: Handler, prefix: str, region: str) -> None:
        self.spec = spec
        self.handler = handler
        self.prefix = prefix
        self.region = region
        self.name = f"{prefix}-{spec.key}"
        self._lock = threading.Lock()
        self.invocations = 0

    @classmethod
    def load(cls, key: str, prefix: str, region: str, handler: Handler | None = None) -> LocalFunction:
        """The function `key` from the topology, with its own handler or `handler` standing in for it."""
        spec = function_spec(key)
        return cls(spec, handler if handler is not None else load_handler(spec), prefix, region)

    def invoke(self, event: dict[str, Any]) -> Any:
        """Call the handler with `event` and a fresh context, as one invocation; exceptions propagate."""
        with self._lock:
            self.invocations += 1
            return self.handler(event, make_context(self.spec, self.prefix, self.region))
