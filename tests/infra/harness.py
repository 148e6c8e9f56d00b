"""Run the Pulumi program under the mocks and hand back what it registered and exported.

Each call sets fresh mocks and builds the stack inside a `@pulumi.runtime.test` function, which waits for
every registration before returning (AWS-LOCAL.md: never build a stack at import time).
"""

from __future__ import annotations

from collections.abc import Callable
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


def deploy(args: StackArgs | None = None, program: Callable[[StackArgs], Stack] = build) -> Deployed:
    """Run `program(args)` under fresh mocks; return the recorded resources and the resolved outputs."""
    mocks = AwsMocks()
    pulumi.runtime.set_mocks(
        mocks, project="eventsourcing", stack="unit", preview=False, monitor=RecordingMonitor(mocks)
    )
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[misc]
    def run() -> pulumi.Output[None]:
        stack = program(args or stack_args())
        return pulumi.Output.from_input(stack.outputs).apply(outputs.update)

    run()
    return Deployed(mocks, outputs)
