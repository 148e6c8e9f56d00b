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
def mocked_runtime(
    mocks: AwsMocks, *, project: str, stack: str, config: dict[str, str] | None = None
) -> Iterator[None]:
    """A fresh Pulumi runtime for one run of the program: its own event loop, its own root stack, these mocks
    and this config; all of it taken down again afterwards.

    Two pieces of Pulumi's state outlive a run and must not leak into the next one:
    - the event loop: Pulumi's runtime works on the thread's current loop, and pytest-asyncio (like this
      function) closes its loop after each test and leaves none current, so code that reached for the current
      loop after an async test failed with "no current event loop" (the loop pitfall in docs/testing.md);
    - the root `Stack` resource: `set_mocks` creates one only when none exists, and it lives in a context
      variable for the rest of the process. Created on another loop (or on a loop that never ran), its
      registration never completes on this one and every resource parented to it fails ("await wasn't used
      with future"); created by an earlier run, it carries that run's project, stack name and exports.
    So everything that touches the runtime happens inside the new loop, after the root has been dropped."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.reset_options()
    try:
        pulumi.runtime.set_mocks(
            mocks, project=project, stack=stack, preview=False, monitor=RecordingMonitor(mocks)
        )
        pulumi.runtime.set_all_config(config or {})
        yield
    finally:
        pulumi.runtime.set_all_config({})
        pulumi.runtime.reset_options()
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

    with mocked_runtime(mocks, project="eventsourcing", stack="unit"):
        run()
    return Deployed(mocks, outputs)
