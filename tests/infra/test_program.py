"""The program's entry (`__main__.py`): config in, StackArgs out, outputs exported; bad config stops it in one
line. Run the way Pulumi runs it (the file itself), under the mocks, with the bundle build stubbed out."""

from __future__ import annotations

import dataclasses
import json
import re
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

import infra.stack
from infra.config import ConfigError, StackArgs
from tests.infra.harness import FAKE_CODE, mocked_runtime
from tests.infra.mocks import AwsMocks

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]


@pytest.fixture(autouse=True)
def _no_bundle_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra.stack, "lambda_code", lambda args, root=REPO_ROOT: FAKE_CODE)


def run_program(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[AwsMocks, dict[str, Any]]:
    """Run __main__.py with this stack config (values as `pulumi config set` stores them)."""
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", exported.__setitem__)
    mocks = AwsMocks()
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[misc]
    def run() -> pulumi.Output[None]:
        runpy.run_path(str(REPO_ROOT / "__main__.py"), run_name="__pulumi_main__")
        return pulumi.Output.from_input(exported).apply(resolved.update)

    stack_config = {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    with mocked_runtime(mocks, project=PROJECT, stack="Staging_1", config=stack_config):
        run()
    return mocks, resolved


def test_defaults_give_a_stack_named_after_the_pulumi_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    mocks, outputs = run_program({}, monkeypatch)
    assert outputs["tables"]["events"] == "es-staging-1-events"
    assert outputs["functions"]["load"] == "es-staging-1-load"
    assert {"apiUrl", "tables", "streams", "replayerRunTaskCommand", "playbackInvokeCommand"} <= set(outputs)
    fn = mocks.named("aws:lambda/function:Function", "es-staging-1-load")
    assert fn.inputs["runtime"] == StackArgs.__dataclass_fields__["lambda_runtime"].default


def test_config_keys_reach_the_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    mocks, outputs = run_program(
        {
            "namePrefix": "es-prod",
            "lambdaRuntime": "python3.14",
            "shardCounts": {"ingest": 3},
            "replayTargetStreams": ["es-test-ingest"],
            "tracing": "false",
            "apiThrottleRateLimit": "50.5",
            "maxRetryAttempts": {"write": "2", "service": 2},
            "reservedConcurrency": {"playback": "2", "load": 10},
            "apiAuthorization": "cognito",
            "cognitoUserPoolArns": ["arn:aws:cognito-idp:eu-west-2:123456789012:userpool/eu-west-2_x"],
        },
        monkeypatch,
    )
    assert outputs["streams"]["ingest"] == "es-prod-ingest"
    assert mocks.named("aws:kinesis/stream:Stream", "es-prod-ingest").inputs["shardCount"] == 3
    load = mocks.named("aws:lambda/function:Function", "es-prod-load").inputs
    assert load["runtime"] == "python3.14"
    assert load["tracingConfig"] == {"mode": "PassThrough"}
    assert load["reservedConcurrentExecutions"] == 10
    playback = mocks.named("aws:lambda/function:Function", "es-prod-playback").inputs
    assert playback["reservedConcurrentExecutions"] == 2
    settings = mocks.one("aws:apigateway/methodSettings:MethodSettings").inputs["settings"]
    assert settings["throttlingRateLimit"] == 50.5
    retries = sorted(
        m.inputs["maximumRetryAttempts"]
        for m in mocks.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    )
    assert retries == [-1, 2, 2, 2, 2]  # the pump keeps its own
    assert outputs["apiAuthorization"] == "cognito"
    task_policy = next(
        json.loads(p.inputs["policy"])
        for p in mocks.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.inputs["role"] == "es-prod-replayer-task"
    )
    resources = [r for st in task_policy["Statement"] for r in st["Resource"]]
    assert any(r.endswith(":stream/es-test-ingest") for r in resources)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"shardCount": "2"}, "unknown config key(s) shardCount"),
        ({"logRetentionDays": "a week"}, "logRetentionDays"),
        ({"logRetentionDays": "2"}, "logRetentionDays 2 is not a value CloudWatch Logs accepts"),
        ({"shardCounts": ["ingest"]}, "shardCounts must be a map"),
        ({"shardCounts": {"ingest": "many"}}, "shardCounts.ingest must be an integer"),
        ({"shardCounts": {"audit": 2}}, "shardCounts names 'audit', which is not a stream"),
        ({"replayTargetStreams": "es-test-ingest"}, "replayTargetStreams"),
        ({"apiAuthorization": "cognito"}, "apiAuthorization cognito needs cognitoUserPoolArns"),
        ({"namePrefix": "Prod Stack"}, "namePrefix 'Prod Stack'"),
        ({"tracing": "sometimes"}, "tracing"),
    ],
)
def test_bad_config_stops_the_program_with_one_line(
    config: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        run_program(config, monkeypatch)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    # Pulumi prints a RunError's message alone, without a traceback.
    assert isinstance(caught.value, pulumi.RunError)


def config_keys() -> set[str]:
    skip = {"prefix", "lambda_code"}
    camel = {
        re.sub(r"_([a-z])", lambda m: m.group(1).upper(), f.name)
        for f in dataclasses.fields(StackArgs)
        if f.name not in skip
    }
    return camel | {"namePrefix"}


def test_the_deploy_guide_documents_every_config_key() -> None:
    guide = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = guide.split("### Config keys", 1)[1].split("\n#", 1)[0]
    documented = set(re.findall(r"^\| `([a-zA-Z]+)` \|", section, flags=re.MULTILINE))
    assert documented == config_keys()


def test_the_example_stack_config_uses_known_keys_only() -> None:
    example = yaml.safe_load((REPO_ROOT / "Pulumi.example.yaml").read_text(encoding="utf-8"))
    keys = {k.split(":", 1)[1] for k in example["config"] if k.startswith(f"{PROJECT}:")}
    assert keys
    assert keys <= config_keys()


# -- StackArgs on its own -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"replayer_cpu": 1024, "replayer_memory_mb": 512}, "does not go with replayerCpu 1024"),
        ({"replayer_subnet_ids": ["subnet-1"]}, "give both or neither"),
        ({"reserved_concurrency": {"audit": 1}}, "'audit', which is not a function"),
        ({"parallelization_factors": {"query": 2}}, "'query', which no stream feeds"),
        ({"stream_retention_hours": {"ingest": 12}}, "streamRetentionHours for ingest must be 24-8760"),
        ({"max_record_age_seconds": {"write": 30}}, "maxRecordAgeSeconds for write must be -1 or 60-604800"),
        ({"alarm_email": "ops"}, "alarmEmail"),
        ({"lambda_runtime": "python3.9"}, "lambdaRuntime"),
        (
            {"ledger_export_url": "ledger.example.com"},
            "ledgerExportUrl 'ledger.example.com' is not an http(s) URL",
        ),
        ({"gateway_missing": "maybe"}, "gatewayMissing 'maybe' must be error, skip or live"),
    ],
)
def test_stack_args_refuse_values_aws_would_refuse(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        StackArgs(prefix="es-unit", **overrides)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        StackArgs(prefix="x", log_level="LOUD", stream_mode="FAST")  # type: ignore[arg-type]
    assert str(caught.value).count(";") == 2
