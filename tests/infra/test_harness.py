"""The harness gives every mocked Pulumi run a runtime of its own, whatever ran before it in the process: an
async test that closed its loop, or another Pulumi run with another project, stack or config."""

from __future__ import annotations

import asyncio

import pulumi
import pulumi_aws as aws

from tests.infra.harness import mocked_runtime
from tests.infra.mocks import AwsMocks

QUEUE = "aws:sqs/queue:Queue"


def run_one_queue(stack: str, config: dict[str, str] | None = None) -> tuple[AwsMocks, dict[str, str | None]]:
    """Register one queue under a fresh runtime; return the mocks and the config the program saw."""
    mocks = AwsMocks()
    seen: dict[str, str | None] = {}

    @pulumi.runtime.test  # type: ignore[misc]
    def run() -> pulumi.Output[str]:
        seen["colour"] = pulumi.Config("harness").get("colour")
        return aws.sqs.Queue("q").arn

    with mocked_runtime(mocks, project="harness", stack=stack, config=config):
        run()
    return mocks, seen


def test_a_run_after_an_async_test_builds_in_a_loop_of_its_own() -> None:
    # What pytest-asyncio leaves behind after an async test: its loop closed and no current loop at all.
    asyncio.run(asyncio.sleep(0))
    mocks, _ = run_one_queue("after-async")
    assert [r.name for r in mocks.of_type(QUEUE)] == ["q"]


def test_each_run_parents_its_resources_to_a_root_stack_of_its_own() -> None:
    run_one_queue("first")
    mocks, _ = run_one_queue("second")
    parent = mocks.one(QUEUE).options["parent"]
    assert parent == "urn:pulumi:second::harness::pulumi:pulumi:Stack::harness-second"


def test_config_and_root_stack_do_not_outlive_the_run() -> None:
    _, seen = run_one_queue("configured", {"harness:colour": "blue"})
    assert seen == {"colour": "blue"}
    assert pulumi.runtime.get_root_resource() is None
    _, seen = run_one_queue("plain")
    assert seen == {"colour": None}
