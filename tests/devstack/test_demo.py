"""The demo's plumbing: the env file a running stack writes and the demo reads, and the section registry."""

from __future__ import annotations

import importlib
import inspect
import io
import os
import stat
from pathlib import Path

import pytest

from devstack import demo as demo_module
from devstack.demo import SECTIONS, Client, Demo, NeedsStack, run_demo, section_name, select_sections
from devstack.envfile import EnvFileError, read_env_file, remove_env_file, write_env_file
from devstack.stack import LocalStack
from eventlog.settings import Settings


def test_the_env_file_round_trips_the_export_lines_quoting_included(tmp_path: Path) -> None:
    path = tmp_path / ".devstack" / "env"
    lines = ["unset AWS_PROFILE", "export A=1", "export B='two words'", "export C='it'\"'\"'s'"]

    written = write_env_file(path, lines)

    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "it's"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    remove_env_file(path, written)
    assert not path.exists()


def test_a_stack_never_removes_an_env_file_another_stack_wrote_since(tmp_path: Path) -> None:
    path = tmp_path / "env"
    ours = write_env_file(path, ["export ES_API_URL=http://127.0.0.1:1"])
    write_env_file(path, ["export ES_API_URL=http://127.0.0.1:2"])  # a second stack started meanwhile

    remove_env_file(path, ours)

    assert read_env_file(path) == {"ES_API_URL": "http://127.0.0.1:2"}


def test_no_env_file_is_no_variables_and_a_broken_one_is_a_clear_error(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "missing") == {}
    broken = tmp_path / "env"
    broken.write_text("export A='unterminated\n")
    with pytest.raises(EnvFileError, match=r"env:1"):
        read_env_file(broken)
    broken.write_text("export 1A=x\n")
    with pytest.raises(EnvFileError, match="not NAME=value"):
        read_env_file(broken)


def test_every_registered_section_is_a_module_with_a_section_function_and_a_title() -> None:
    assert SECTIONS[0] == "devstack.demo_basics"  # the live path first: later parts build on it
    names = [section_name(m) for m in SECTIONS]
    assert len(set(names)) == len(names)
    for module_name in SECTIONS:
        module = importlib.import_module(module_name)
        assert isinstance(module.TITLE, str)
        assert list(inspect.signature(module.section).parameters) == ["demo"]


def test_sections_are_chosen_by_name_in_registry_order_and_an_unknown_one_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert select_sections(None) == list(SECTIONS)
    assert select_sections(["basics"]) == ["devstack.demo_basics"]

    code = run_demo("http://127.0.0.1:9", sections=["nonesuch"], out=io.StringIO())

    assert code == 2
    assert "no demo section nonesuch (known: basics" in capsys.readouterr().err


def test_the_demo_takes_the_url_and_the_endpoint_from_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Demo] = []

    def spy(demo: Demo) -> None:
        seen.append(demo)

    monkeypatch.setattr(demo_module, "SECTIONS", ("tests.devstack.test_demo",))
    monkeypatch.setattr(demo_module, "run_sections", lambda demo, modules: spy(demo))
    env = tmp_path / "env"
    write_env_file(
        env, ["export ES_API_URL=http://127.0.0.1:1", "export AWS_ENDPOINT_URL=http://127.0.0.1:2"]
    )

    assert run_demo(env_file=env, out=io.StringIO()) == 0

    (demo,) = seen
    assert demo.client.base_url == "http://127.0.0.1:1"
    assert demo.settings.endpoint_url == "http://127.0.0.1:2"
    assert os.environ["AWS_ENDPOINT_URL"] != "http://127.0.0.1:2"  # the process's environment is put back


def test_a_part_that_fails_unexpectedly_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(demo: Demo) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(demo_module, "SECTIONS", ("tests.devstack.test_demo",))
    monkeypatch.setattr(__import__("tests.devstack.test_demo", fromlist=["section"]), "section", broken)
    monkeypatch.setattr(Client, "call", lambda self, *a, **k: None)

    code = run_demo("http://127.0.0.1:9", out=io.StringIO())

    error = capsys.readouterr().err.strip()
    assert code == 1
    assert error == "devstack demo: part 1 (test_demo) failed: KeyError('boom')"


def test_a_stale_env_file_says_where_the_url_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = tmp_path / "env"
    write_env_file(env, [f"export ES_API_URL=http://127.0.0.1:{port}"])

    code = run_demo(env_file=env, out=io.StringIO())

    error = capsys.readouterr().err.strip()
    assert code == 1
    assert error.count("\n") == 0
    assert f"the URL came from {env}" in error


def test_a_section_that_needs_the_endpoint_without_one_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    demo = Demo(Client("http://127.0.0.1:9", io.StringIO()), timeout=1.0)

    with pytest.raises(
        NeedsStack, match=r"needs AWS_ENDPOINT_URL: run the demo against `python -m devstack`"
    ):
        demo.settings  # noqa: B018


def test_wait_for_returns_the_first_answer_and_names_what_it_waited_for() -> None:
    demo = Demo(Client("http://127.0.0.1:9", io.StringIO()), timeout=0.2)
    answers = iter([None, False, {"ok": 1}])

    assert demo.wait_for(lambda: next(answers), "a thing", interval=0.01) == {"ok": 1}
    with pytest.raises(demo_module.DemoError, match="still waiting after 0s for nothing at all"):
        demo.wait_for(lambda: None, "nothing at all", interval=0.01)


def test_deploy_changes_the_functions_settings_like_an_update_of_their_configuration(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers import runtime

    monkeypatch.delenv("ES_DEMO_RULE", raising=False)
    with LocalStack(port=0, endpoint_url=settings.endpoint_url, prefix=settings.prefix) as stack:
        before = runtime.settings()
        demo = Demo(Client(stack.url, io.StringIO()), timeout=5.0)

        demo.deploy({"ES_DEMO_RULE": "2"}, "the fixed rule")

        assert os.environ["ES_DEMO_RULE"] == "2"
        assert runtime.settings() is not before  # every function starts from fresh settings (a new container)
        refused = demo.client.call(
            "PUT", "/_devstack/environment", {"AWS_ENDPOINT_URL": "http://x"}, show=False
        )
        assert refused.status == 400
        assert "only ES_* variables" in refused.body["message"]
        assert demo.client.call("PUT", "/_devstack/environment", [1], show=False).status == 400
        listed = demo.client.call("GET", "/_devstack/environment", show=False)
        assert listed.body["ES_DEMO_RULE"] == "2"
        # Not from another machine: the route is the API's 404 there.
        answer = stack._gateway.handle("GET", "/_devstack/environment", [], None, "10.1.2.3")  # type: ignore[union-attr]
        assert answer.status == 404
    assert "ES_DEMO_RULE" not in os.environ  # put back when the stack stops


TITLE = "a stand-in section"


def section(demo: Demo) -> None:
    """A section for the tests above."""
