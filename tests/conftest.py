"""Fixtures shared by every test: one embedded AWS per session, reset between tests, no real AWS settings.

- `aws_env` (autouse) strips every AWS_* and ES_* variable and points the config files at nothing, so a
  developer's ~/.aws never changes what a test asserts; then it points the process at the embedded AWS.
- `settings` gives a fresh moto (reset) with every table and stream created from eventlog.resources.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from devstack.embedded_aws import EMULATOR_CREDENTIALS, EmbeddedAWS
from eventlog.aws import dynamodb_client, kinesis_client
from eventlog.provision import create_resources
from eventlog.settings import Settings

TEST_PREFIX = "es-test"
# The environment as the test run started, before any fixture strips it: only the opt-in real-AWS contract
# tests read it (see tests/eventlog/test_event_store_contract.py).
REAL_ENVIRONMENT = dict(os.environ)

# Hypothesis, for the whole suite. No deadline: on two shared cores an example that takes 0.1 ms alone took
# 274 ms once (seed 3), and a deadline then fails a codec test for the machine's load, not for the code.
# print_blob: a failure prints @reproduce_failure(...), which replays that exact example whatever the test
# order or pytest-randomly's seed (Hypothesis draws from its own generator, not from `random`).
hypothesis_settings.register_profile("suite", deadline=None, print_blob=True)
hypothesis_settings.load_profile("suite")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Repeat the order's seed (pytest-randomly) beside the results, where a failure is read, even under -q."""
    seed = config.getoption("randomly_seed", default=None)
    if isinstance(seed, int) and not hasattr(config, "workerinput"):
        terminalreporter.write_line(
            f"Test order: --randomly-seed={seed}; re-run it with "
            f"make pytest PYTEST_ARGS='--randomly-seed={seed}' (add -n 0 to replay it in one process)"
        )


@pytest.fixture(scope="session")
def embedded_aws() -> Iterator[EmbeddedAWS]:
    aws = EmbeddedAWS()
    aws.start()
    yield aws
    aws.stop()


@pytest.fixture(autouse=True)
def aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, embedded_aws: EmbeddedAWS
) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith(("AWS_", "ES_")):
            monkeypatch.delenv(name)
    empty = tmp_path_factory.mktemp("aws-config")
    env = {
        **EMULATOR_CREDENTIALS,
        "AWS_CONFIG_FILE": str(Path(empty) / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(Path(empty) / "credentials"),
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": embedded_aws.endpoint_url,
        "ES_NAME_PREFIX": TEST_PREFIX,
        "POWERTOOLS_SERVICE_NAME": "eventsourcing-test",
        "POWERTOOLS_METRICS_NAMESPACE": "EventSourcingTest",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def _session_clients(embedded_aws: EmbeddedAWS) -> dict[str, Any]:
    # Clients cost tens of milliseconds to build; the endpoint never changes within a session.
    resolved = Settings(endpoint_url=embedded_aws.endpoint_url, region="us-east-1", prefix=TEST_PREFIX)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in EMULATOR_CREDENTIALS.items():
            patch.setenv(name, value)
        return {"dynamodb": dynamodb_client(resolved), "kinesis": kinesis_client(resolved)}


@pytest.fixture
def settings(
    embedded_aws: EmbeddedAWS, aws_env: dict[str, str], _session_clients: dict[str, Any]
) -> Settings:
    """A clean embedded AWS with the whole stack's tables and streams."""
    embedded_aws.reset()
    resolved = Settings.from_env()
    create_resources(resolved, _session_clients["dynamodb"], _session_clients["kinesis"])
    return resolved


@pytest.fixture
def dynamodb(settings: Settings, _session_clients: dict[str, Any]) -> Any:
    return _session_clients["dynamodb"]


@pytest.fixture
def kinesis(settings: Settings, _session_clients: dict[str, Any]) -> Any:
    return _session_clients["kinesis"]


@pytest.fixture(autouse=True)
def _fresh_handler_runtime() -> Iterator[None]:
    """Handlers cache settings and clients per container; each test is a new container."""
    import handlers.runtime

    handlers.runtime.reset()
    yield
    handlers.runtime.reset()


@pytest.fixture
def real_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The caller's own AWS settings, for tests that opt in to a real account; the embedded AWS endpoint and
    the empty config files are taken away again for them."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        if name in REAL_ENVIRONMENT:
            monkeypatch.setenv(name, REAL_ENVIRONMENT[name])
        else:
            monkeypatch.delenv(name, raising=False)
    return REAL_ENVIRONMENT
