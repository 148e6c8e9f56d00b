"""Every command in README.md and docs/*.md, run as a reader would run it (tests/docs/runner.py says how).

A page with commands runs in one terminal session against the local stack the page itself starts (`make run`),
in a copy of the repository; each command must end with the exit code the page expects and each `curl` get a
2xx (or what the page says it answers). A command that cannot run here must say why (`needs: aws`, ...), and
a block must say its language, so a new command cannot escape the test by accident.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.docs import runner
from tests.docs.runner import ROOT, Command, DocError, Terminal

PAGES = runner.doc_pages()


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _pages_with_commands() -> list[Path]:
    found = []
    for page in PAGES:
        try:
            if any(c.runnable for c in runner.page_commands(page)):
                found.append(page)
        except DocError:
            found.append(page)  # the page's own test reports what is wrong with it
    return found


def test_every_page_reads_every_block_has_a_language_and_every_command_ends() -> None:
    problems = []
    for page in PAGES:
        try:
            runner.page_commands(page)
        except DocError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_commands_that_cannot_run_here_say_what_they_need() -> None:
    problems = []
    for page in PAGES:
        for command in runner.page_commands(page):
            missing = runner.unmarked_programs(command)
            if missing:
                problems.append(
                    f"{command.where}: {command.text!r} needs {', '.join(missing)}: "
                    f"end it with `# needs: {', '.join(missing)}`"
                )
    assert not problems, "\n".join(problems)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A copy of the repository with its .venv linked; the venv must be what `make` set up."""
    copy = runner.copy_repository(tmp_path / "repo")
    plan = subprocess.run(["make", "-n", "run"], cwd=copy, capture_output=True, text=True, check=True).stdout
    if not (ROOT / ".venv").exists() or "pip install" in plan:
        pytest.fail("the doc test runs the pages' commands in the project's .venv: run `make setup` first")
    return copy


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", _pages_with_commands(), ids=_rel)
def test_the_pages_commands_run(page: Path, repository: Path, tmp_path: Path) -> None:
    commands = runner.page_commands(page)
    with Terminal(repository, tmp_path / "terminal") as terminal:
        outcomes, skipped = runner.run_page(commands, terminal)
    failed = runner.report(outcomes)
    assert not failed, f"{_rel(page)}: commands that do not do what the page says:\n\n{failed}"
    assert outcomes, f"{_rel(page)}: nothing ran"
    print(f"{_rel(page)}: {len(outcomes)} ran:")
    for o in outcomes:
        print(f"  {o.seconds:5.1f}s {o.command.where}: {o.command.text.splitlines()[0][:90]}")
    print(f"{len(skipped)} not run here:")
    for command in skipped:
        print(f"  {command.where} ({', '.join(sorted(command.needs))}): {command.text.splitlines()[0]}")


def test_the_stacks_banner_try_lines_run(repository: Path, tmp_path: Path) -> None:
    """`make run` prints lines to try from another shell; each must work as printed."""
    start = Command(ROOT / "README.md", 0, "make run  # until Ctrl-C", server=True)
    with Terminal(repository, tmp_path / "terminal") as terminal:
        started = terminal.run(start)
        assert started.problem is None, runner.report([started])
        banner = terminal.server_output()
        lines = try_lines(banner)
        assert lines, f"no lines to try in the banner:\n{banner}"
        outcomes = [terminal.run(Command(start.path, 0, line), rewrite=False) for line in lines]
        outcomes += terminal.stop_servers()
    failed = runner.report(outcomes)
    assert not failed, f"the banner's lines to try:\n{banner}\n\n{failed}"


def try_lines(banner: str) -> list[str]:
    """The commands under the banner's "try" heading: its lines indented by four spaces."""
    lines = banner.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("try")), None)
    if start is None:
        return []
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        found.append(line.strip())
    return found
