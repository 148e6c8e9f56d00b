"""The stack's export lines, sourced by a real shell, point a plain boto3 (no arguments: what a user's script or
the AWS CLI does) at the stack, whatever the shell had set before; and they agree with each other.

The shell keeps the test session's isolation (tests/conftest.py's aws_env: no AWS_* or ES_* of the developer,
config files in an empty folder) and adds what a real shell may hold: another region, a profile, a service's
own endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.envfile import read_env_file, write_env_file
from devstack.stack import LocalStack
from eventlog.settings import Settings

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import boto3
    names = json.loads(sys.argv[1])
    table = boto3.resource("dynamodb").Table(names["events"])
    kinesis = boto3.client("kinesis")
    print(json.dumps({
        "region": boto3.session.Session().region_name,
        "tables": boto3.client("dynamodb").list_tables()["TableNames"],
        "scanned": table.scan()["Count"],
        "stream": kinesis.describe_stream_summary(StreamName=names["playback"])["StreamDescriptionSummary"][
            "StreamStatus"
        ],
    }))
    """
)


@pytest.fixture
def stack(settings: Settings) -> Iterator[LocalStack]:
    with LocalStack(port=0, endpoint_url=settings.endpoint_url, fakes=False) as running:
        yield running


def sourced(env_file: Path, shell_env: dict[str, str], names: dict[str, str]) -> dict[str, object]:
    """Run SCRIPT in `bash` after `source env_file`, starting from `shell_env`."""
    command = f'source "$1" && exec "{sys.executable}" -c "$2" "$3"'
    result = subprocess.run(
        ["bash", "-c", command, "bash", str(env_file), SCRIPT, json.dumps(names)],
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize(
    "shell",
    [
        {},
        {
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_REGION": "eu-west-1",
            "AWS_PROFILE": "work",
            "AWS_SESSION_TOKEN": "real-looking",
            "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
            "ES_NAME_PREFIX": "es-other",
        },
    ],
    ids=["a-bare-shell", "a-shell-set-for-somewhere-else"],
)
def test_a_plain_boto3_reaches_the_stack_after_sourcing_the_exports(
    stack: LocalStack, settings: Settings, tmp_path: Path, shell: dict[str, str]
) -> None:
    env_file = tmp_path / "env"
    write_env_file(env_file, stack.export_lines())
    # the session's isolation (no developer AWS_*/ES_*, empty config files), plus what this shell holds
    isolated = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ES_"))}
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        isolated[name] = os.environ[name]
    names = {"events": stack.settings.events_table, "playback": stack.settings.playback_stream}

    answer = sourced(env_file, {**isolated, **shell}, names)

    assert answer["region"] == stack.settings.region
    assert stack.settings.events_table in answer["tables"]  # type: ignore[operator]
    assert answer["scanned"] == 0
    assert answer["stream"] == "ACTIVE"


def test_the_exports_read_back_to_the_stacks_settings(stack: LocalStack, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    write_env_file(env_file, stack.export_lines())
    exported = read_env_file(env_file)
    assert exported["AWS_DEFAULT_REGION"] == exported["AWS_REGION"] == stack.settings.region
    assert Settings.from_env(exported) == stack.settings
    unset = stack.export_lines()[0].split()[1:]
    assert {"AWS_PROFILE", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KINESIS"} <= set(unset)
