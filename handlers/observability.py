"""Logging and metrics for every handler: Powertools Logger (JSON logs) and Metrics (CloudWatch EMF).

Metrics go through Powertools only when they are enabled, checked at each call: Powertools keeps one metric
set for the whole process and, when disabled, never clears it. On Lambda (one invocation per container at a
time) that is fine; in the devstack, where every handler runs in one process and metrics are disabled, it would
grow without end and be shared between concurrent invocations.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

DEFAULT_NAMESPACE = "EventSourcing"
F = TypeVar("F", bound=Callable[..., Any])


def metrics_enabled() -> bool:
    return os.getenv("POWERTOOLS_METRICS_DISABLED", "").strip().lower() not in ("1", "true", "yes")


class Instrumentation:
    """A handler's logger and counters, and the decorator that wires them around its entry point."""

    def __init__(self, service: str) -> None:
        self.logger = Logger(service=service)
        self._metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)

    def count(self, name: str, value: float = 1) -> None:
        """Add to a count metric (a no-op when metrics are disabled)."""
        if metrics_enabled():
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def handler(self, function: F) -> F:
        """Decorate a Lambda entry point: Lambda context in every log line, metrics flushed at the end."""
        logged = self.logger.inject_lambda_context(function)
        with_metrics = self._metrics.log_metrics(logged)

        @functools.wraps(function)
        def entry(event: dict[str, Any], context: Any) -> Any:
            return with_metrics(event, context) if metrics_enabled() else logged(event, context)

        return entry  # type: ignore[return-value]
