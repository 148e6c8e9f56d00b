"""Settings.from_env: the region as boto3 resolves it, and two settings that name one thing must agree.

The autouse `aws_env` fixture strips every AWS_* and ES_* variable and points the AWS config files at an empty
folder; each test here writes the config it needs into that isolation (AWS_CONFIG_FILE) and never reads the
developer's ~/.aws.
"""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest

from eventlog.resources import STREAMS, TABLES
from eventlog.settings import Flag, Settings, SettingsError, default_name

NAME_VARIABLES = [t.setting for t in TABLES] + [s.setting for s in STREAMS]


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """No region, endpoint or name anywhere; empty config files of the test's own."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "ES_NAME_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return {"config": str(tmp_path / "config"), "credentials": str(tmp_path / "credentials")}


def boto3_region() -> str | None:
    return boto3.session.Session().region_name


# -- the region ----------------------------------------------------------------------------------------------


def test_the_default_profiles_region_in_the_config_file_is_used_as_boto3_uses_it(
    bare: dict[str, str],
) -> None:
    Path(bare["config"]).write_text("[default]\nregion = eu-west-3\n")
    assert boto3_region() == "eu-west-3"
    assert Settings.from_env().region == "eu-west-3"


def test_the_chosen_profiles_region_is_used(bare: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    Path(bare["config"]).write_text("[default]\nregion = eu-west-3\n\n[profile work]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert boto3_region() == "ap-south-1"
    assert Settings.from_env().region == "ap-south-1"


def test_a_region_in_the_shared_credentials_file_counts_as_for_boto3(bare: dict[str, str]) -> None:
    Path(bare["credentials"]).write_text("[default]\nregion = sa-east-1\n")
    assert boto3_region() == "sa-east-1"
    assert Settings.from_env().region == "sa-east-1"


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_the_environment_wins_over_the_profile(
    bare: dict[str, str], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    Path(bare["config"]).write_text("[default]\nregion = eu-west-3\n")
    monkeypatch.setenv(variable, "eu-north-1")
    assert Settings.from_env().region == "eu-north-1"
    if variable == "AWS_DEFAULT_REGION":  # the one boto3 itself reads
        assert boto3_region() == "eu-north-1"


def test_no_region_anywhere_is_one_line_saying_how_to_set_one(bare: dict[str, str]) -> None:
    assert boto3_region() is None
    with pytest.raises(SettingsError) as missing:
        Settings.from_env()
    message = str(missing.value)
    assert "\n" not in message
    assert "AWS_REGION" in message
    assert "aws configure set region" in message


def test_a_local_default_is_only_where_the_caller_asks_for_it(bare: dict[str, str]) -> None:
    assert Settings.from_env(default_region="us-east-1").region == "us-east-1"


def test_a_profile_that_does_not_exist_is_one_line(
    bare: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(bare["config"]).write_text("[default]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(SettingsError, match="AWS_PROFILE=nope: no such profile"):
        Settings.from_env()


def test_two_region_variables_that_disagree_are_refused(
    bare: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a shell that already had another AWS_DEFAULT_REGION: boto3 and the AWS CLI would go to that one
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert str(refused.value).startswith("AWS_REGION=us-east-1 and AWS_DEFAULT_REGION=eu-west-1 disagree")


def test_a_region_flag_must_agree_with_the_environment(
    bare: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert Settings.from_env(region=Flag("--region", "us-east-1")).region == "us-east-1"
    with pytest.raises(SettingsError, match="--region eu-west-1 and AWS_REGION=us-east-1 disagree"):
        Settings.from_env(region=Flag("--region", "eu-west-1"))
    monkeypatch.delenv("AWS_REGION")
    assert Settings.from_env(region=Flag("--region", "eu-west-1")).region == "eu-west-1"


# -- the endpoint --------------------------------------------------------------------------------------------


def test_an_endpoint_flag_and_a_services_own_endpoint_must_agree_with_aws_endpoint_url() -> None:
    env = {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
    assert Settings.from_env(env, endpoint_url=Flag("--endpoint-url", "http://127.0.0.1:4566")).endpoint_url
    with pytest.raises(
        SettingsError, match=re.escape("--endpoint-url http://127.0.0.1:5000 and AWS_ENDPOINT_URL=")
    ):
        Settings.from_env(env, endpoint_url=Flag("--endpoint-url", "http://127.0.0.1:5000"))
    with pytest.raises(SettingsError, match="AWS_ENDPOINT_URL_KINESIS=http://elsewhere disagree"):
        Settings.from_env({**env, "AWS_ENDPOINT_URL_KINESIS": "http://elsewhere"})


# -- the names -----------------------------------------------------------------------------------------------

REGION = {"AWS_REGION": "us-east-1"}


def test_a_stacks_exports_prefix_and_the_names_it_derives_are_consistent() -> None:
    exported = Settings.from_env({**REGION, "ES_NAME_PREFIX": "es-local"}).environment()
    assert exported["ES_EVENTS_TABLE"] == "es-local-events"
    assert Settings.from_env({**REGION, **exported}).events_table == "es-local-events"


def test_a_changed_prefix_with_the_names_of_another_stack_is_refused_naming_both() -> None:
    exported = Settings.from_env({**REGION, "ES_NAME_PREFIX": "es-local"}).environment()
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**REGION, **exported, "ES_NAME_PREFIX": "es-local-t1"})
    message = str(refused.value)
    assert "\n" not in message
    assert "ES_EVENTS_TABLE=es-local-events and ES_NAME_PREFIX=es-local-t1 disagree" in message
    assert "es-local-t1-events" in message


@pytest.mark.parametrize("variable", NAME_VARIABLES)
def test_every_name_variable_is_checked_against_the_prefix(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable}=es-other-"):
        Settings.from_env({**REGION, "ES_NAME_PREFIX": "es-mine", variable: "es-other-x"})


def test_names_chosen_by_hand_without_a_prefix_are_kept_and_read_back_the_same() -> None:
    chosen = Settings.from_env({**REGION, "ES_EVENTS_TABLE": "legacy-events"})
    assert chosen.events_table == "legacy-events"
    assert chosen.state_table == default_name("es-local", "state")
    exported = chosen.environment()
    assert "ES_NAME_PREFIX" not in exported  # beside a name it does not derive, it would be a contradiction
    assert Settings.from_env({**REGION, **exported}) == chosen


def test_a_name_flag_must_agree_with_the_names_variable_or_the_prefix() -> None:
    env = {**REGION, "ES_NAME_PREFIX": "es-local"}
    assert Settings.from_env(env, names={"events": Flag("--table", "es-local-events")}).events_table
    with pytest.raises(SettingsError, match="--table es-t1-events and ES_NAME_PREFIX=es-local disagree"):
        Settings.from_env(env, names={"events": Flag("--table", "es-t1-events")})
    assert Settings.from_env(REGION, names={"events": Flag("--table", "es-t1-events")}).events_table == (
        "es-t1-events"
    )
