"""Run the Pulumi program under the mocks and hand back what it registered and exported.

Each call sets fresh mocks and builds the stack inside a `@pulumi.runtime.test` function, which waits for
every registration before returning (docs/testing.md: never build a stack at import time).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pulumi

from infra.config import StackArgs
from infra.stack import Stack, build
from tests.infra.mocks import AwsMocks, RecordingMonitor

# Stands in for the bundle: the mocks never look inside the code archive.
FAKE_CODE = pulumi.AssetArchive({"handlers/__init__.py": pulumi.StringAsset("")})
PREFIX = "es-unit"


@dataclass
class Deployed:
    mocks: AwsMocks
    outputs: dict[str, Any]


def stack_args(**overrides: Any) -> StackArgs:
    """StackArgs with the test prefix and the fake bundle, plus any overrides."""
    return replace(StackArgs(prefix=PREFIX, lambda_code=FAKE_CODE), **overrides)


@contextlib.contextmanager
def own_event_loop() -> Iterator[None]:
    """A fresh event loop for one run of the program.

    Pulumi's runtime works on the thread's current loop; pytest-asyncio closes its loop after each async test
    and leaves none current, so a Pulumi test after an async one would fail with "no current event loop"
    (the loop pitfall in docs/testing.md). Each run gets a loop of its own and closes it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def deploy(args: StackArgs | None = None, program: Callable[[StackArgs], Stack] = build) -> Deployed:
    """Run `program(args)` under fresh mocks; return the recorded resources and the resolved outputs."""
    mocks = AwsMocks()
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[misc]
    def run() -> pulumi.Output[None]:
        stack = program(args or stack_args())
        return pulumi.Output.from_input(stack.outputs).apply(outputs.update)

    with own_event_loop():
        pulumi.runtime.set_mocks(
            mocks, project="eventsourcing", stack="unit", preview=False, monitor=RecordingMonitor(mocks)
        )
        run()
    return Deployed(mocks, outputs)
