"""The doc runner itself (tests/docs/runner.py): it must read pages as bash would, and fail what a reader would
see fail: a non-zero exit, a 4xx, a server that dies or does not stop, a command that hangs, a command that
cannot run here and says nothing."""

from __future__ import annotations

import http.server
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs import runner
from tests.docs.runner import ROOT, Command, DocError, Ports, Terminal


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def commands_of(tmp_path: Path, text: str) -> list[Command]:
    return runner.page_commands(page(tmp_path, text))


def run(tmp_path: Path, text: str, ports: Ports | None = None) -> list[runner.Outcome]:
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    with Terminal(cwd, tmp_path / "terminal", ports) as terminal:
        outcomes, _ = runner.run_page(commands_of(tmp_path, text), terminal)
    return outcomes


def problems(outcomes: list[runner.Outcome]) -> list[str | None]:
    return [o.problem for o in outcomes]


# -- reading -----------------------------------------------------------------------------------------------------


def test_a_block_without_a_language_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DocError, match=r"page.md:2: a fenced block without a language"):
        commands_of(tmp_path, "text\n```\nmake run\n```\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("```bash\nls\n```\n", "does not know the language 'bash'"),
        ("```sh\nls   # needs: aws-account\n```\n", "unknown 'needs: aws-account'"),
        ("```sh\necho 'open quote\n```\n", "never ends"),
        ("```sh\nls\n", "never closes"),
    ],
)
def test_what_the_runner_cannot_read_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DocError, match=message):
        commands_of(tmp_path, text)


def test_commands_are_split_as_bash_reads_them(tmp_path: Path) -> None:
    found = commands_of(
        tmp_path,
        "```sh\n"
        "# a comment line\n"
        "curl -s localhost:8080/a \\\n  -H 'X: y'\n"
        "\n"
        "for i in 1 2; do\n  echo $i\ndone\n"
        "f() {  # a function\n  echo '# not a comment'\n}\n"
        "```\n"
        "```console\n$ echo one\none\n$ echo two \\\n  three\ntwo three\n```\n"
        '```json\n{"not": "run"}\n```\n',
    )
    assert [c.text for c in found] == [
        "curl -s localhost:8080/a \\\n  -H 'X: y'",
        "for i in 1 2; do\n  echo $i\ndone",
        "f() {  # a function\n  echo '# not a comment'\n}",
        "echo one",
        "echo two \\\n  three",
    ]
    assert [c.line for c in found] == [3, 6, 9, 14, 16]


def test_markers_come_from_the_comment_or_the_fence(tmp_path: Path) -> None:
    found = commands_of(
        tmp_path,
        "```sh needs: docker\ndocker ps\n```\n"
        "```sh\n"
        "make run   # the stack, until Ctrl-C\n"
        "curl -s localhost:8080/x   # answers 200 or 404\n"
        "ops diff x --exit-code   # exits 4\n"
        "echo 'needs: aws'\n"
        "make bench   # needs: minutes, aws\n"
        "```\n",
    )
    assert [(c.needs, c.server, c.answers, c.exits) for c in found] == [
        ({"docker"}, False, None, 0),
        (set(), True, None, 0),
        (set(), False, {200, 404}, 0),
        (set(), False, None, 4),
        (set(), False, None, 0),  # in a string, not a comment
        ({"minutes", "aws"}, False, None, 0),
    ]


@pytest.mark.parametrize(
    ("text", "unmarked"),
    [
        ("pulumi up", ["pulumi"]),
        ("URL=$(pulumi stack output apiUrl); REGION=$(pulumi stack output region)", ["pulumi"]),
        ("make setup && pulumi up   # needs: pulumi", []),
        ("awscurl --service execute-api $URL", ["aws"]),
        ("AWS_REGION=x aws s3 ls | head", ["aws"]),
        ("docker build . && docker run x   # needs: docker", []),
        ("echo aws pulumi docker", []),
        ("python -m replayer --stream es-test-playback", []),
    ],
)
def test_a_program_that_cannot_run_here_must_be_marked(text: str, unmarked: list[str]) -> None:
    command = runner._command(runner.Block(Path("p.md"), 1, "sh", "", (text,)), 2, text, frozenset())
    assert runner.unmarked_programs(command) == unmarked


def test_ports_are_mapped_in_code_and_the_stack_gets_its_port(tmp_path: Path) -> None:
    ports = Ports({8080: 18080, 8081: 18081, 4566: 14566})
    found = commands_of(
        tmp_path,
        "```sh\n"
        "make run    # until Ctrl-C; or: python -m devstack [--port 8080]\n"
        'make run ARGS="--aws-port 4566"   # until Ctrl-C\n'
        "python -m devstack --port 8081   # until Ctrl-C\n"
        "curl -s localhost:8080/x http://127.0.0.1:8081/y\n"
        "```\n",
    )
    assert [ports.rewrite(c) for c in found] == [
        ('make run ARGS="--port 18080"    # until Ctrl-C; or: python -m devstack [--port 8080]', [18080]),
        ('make run ARGS="--aws-port 14566 --port 18080"   # until Ctrl-C', [18080]),
        ("python -m devstack --port 18081   # until Ctrl-C", [18081]),
        ("curl -s localhost:18080/x http://127.0.0.1:18081/y", []),
    ]


# -- running -----------------------------------------------------------------------------------------------------


def test_the_exit_code_must_be_the_one_the_page_says(tmp_path: Path) -> None:
    outcomes = run(
        tmp_path, "```sh\ntrue\nfalse\nfalse   # exits 1\n(exit 4)   # exits 3\nno-such-program\n```\n"
    )
    assert problems(outcomes) == [
        None,
        "exit code 1, expected 0",
        None,
        "exit code 4, expected 3",
        "exit code 127, expected 0 (a program is missing: if it cannot run here, mark the command `needs: ...`)",
    ]


def test_the_terminal_keeps_variables_folders_and_exports_like_a_shell(tmp_path: Path) -> None:
    outcomes = run(
        tmp_path,
        '```sh\nx=1\nmkdir -p sub && cd sub\nexport Y=2\nf() { echo "$x$Y"; }\n'
        'test "$(f)" = 12 && test "$(basename "$PWD")" = sub\n```\n',
    )
    assert problems(outcomes) == [None] * 5


def test_a_fresh_terminal_has_no_virtualenv_or_aws_settings_until_the_page_sets_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-real-secret")
    monkeypatch.setenv("ES_NAME_PREFIX", "prod")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    venv_python = Path(sys.executable).parent / "python"
    outcomes = run(
        tmp_path,
        "```sh\n"
        'test -z "$AWS_SECRET_ACCESS_KEY$ES_NAME_PREFIX"\n'
        f'test "$(command -v python)" != {venv_python}\n'
        f". {Path(sys.prefix) / 'bin' / 'activate'}\n"
        f'test "$(command -v python)" = {venv_python}\n'
        "```\n",
    )
    assert problems(outcomes) == [None] * 4


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404 if self.path == "/missing" else 200)
        self.end_headers()

    def do_POST(self) -> None:
        self.send_response(415)  # what the API answers a body without Content-Type: application/json
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_each_curl_call_must_get_a_2xx_or_what_the_page_says(tmp_path: Path, api: int) -> None:
    closed = runner.free_port()
    outcomes = run(
        tmp_path,
        "```sh\n"
        "curl -s localhost:8080/ok\n"
        "curl -s -X POST localhost:8080/events -d '{}'\n"
        "curl -s -X POST localhost:8080/events -d '{}'   # answers 415\n"
        "curl -s localhost:8080/ok localhost:8080/missing\n"
        "for i in 1 2; do curl -s localhost:8080/ok; done\n"
        f"curl -s localhost:{closed}/   # exits 7\n"
        "curl -s -o /dev/null -w '%{http_code}' localhost:8080/ok\n"
        "```\n",
        Ports({8080: api, closed: closed}),
    )
    assert problems(outcomes) == [
        None,
        f"POST http://localhost:{api}/events answered 415",
        None,
        f"GET http://localhost:{api}/missing answered 404",
        None,
        f"GET http://localhost:{closed}/ answered nothing (no connection)",
        "its curl made no call (or its own --write-out hid the status)",
    ]
    assert outcomes[4].http == [(200, "GET", f"http://localhost:{api}/ok")] * 2


def test_json_a_command_is_shown_to_print_must_be_in_its_output(tmp_path: Path) -> None:
    found = commands_of(
        tmp_path,
        "```sh\n"
        """echo '{"a":1,"b":{"c":2}}'   # {"a": 1, ... "c": 2 ...}\n"""
        """echo '{"a":1}'   # {... "a": 2 ...}\n"""
        """echo 'x'   # no JSON here: a description\n"""
        "```\n"
        "```console\n"
        """$ echo '{"status":"committed","version":3}'\n{... "version":3 ...}\na line of text, not compared\n"""
        """$ echo '{"outcome":"refused"}'\n{... "outcome":"applied" ...}\n"""
        "```\n",
    )
    assert [c.shows for c in found] == [
        ('{"a": 1, ... "c": 2 ...}',),
        ('{... "a": 2 ...}',),
        (),
        ('{... "version":3 ...}',),
        ('{... "outcome":"applied" ...}',),
    ]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with Terminal(cwd, tmp_path / "terminal") as terminal:
        results = [terminal.run(c) for c in found]
    assert problems(results) == [
        None,
        """its output does not show {... "a": 2 ...} (no '"a":2' where expected)""",
        None,
        None,
        """its output does not show {... "outcome":"applied" ...} (no '"outcome":"applied"' where expected)""",
    ]


SERVER = """
import argparse, http.server, socket, sys
parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--ignore-ctrl-c", action="store_true")
args = parser.parse_args()
if args.ignore_ctrl_c:
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
server = http.server.HTTPServer(("127.0.0.1", args.port), http.server.SimpleHTTPRequestHandler)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
"""


def test_a_server_runs_beside_the_page_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "server.py").write_text(SERVER)
    (tmp_path / "cwd" / "hello.txt").write_text("hello")
    outcomes = run(
        tmp_path,
        "```sh\npython3 server.py --port 8080   # until Ctrl-C\ncurl -s localhost:8080/hello.txt\n```\n",
    )
    assert problems(outcomes) == [None, None, None]  # started, called, stopped
    assert outcomes[1].stdout == "hello"
    assert outcomes[2].exit_code == 0


def test_a_server_that_dies_or_will_not_stop_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "STOP_TIMEOUT_S", 1.0)
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "server.py").write_text(SERVER)
    outcomes = run(
        tmp_path,
        "```sh\n"
        "python3 -c 'import sys; sys.exit(3)' --port 8080   # until Ctrl-C\n"
        "python3 server.py --port 8081 --ignore-ctrl-c   # until Ctrl-C\n"
        "sleep 60   # until Ctrl-C\n"
        "```\n",
    )
    assert problems(outcomes) == [
        "the server ended by itself (exit code 3)",
        None,  # it started
        "a server must name its port (--port N, --serve N) for the runner to know it is up",
        # Ctrl-C at the end, the last started first
        "did not stop within 1s of Ctrl-C",
        "the server ended by itself (exit code 3)",
    ]


def test_a_command_that_hangs_is_stopped_and_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "COMMAND_TIMEOUT_S", 1.0)
    outcomes = run(tmp_path, "```sh\nsleep 60\necho never\n```\n")
    assert problems(outcomes) == ["did not finish within 1s"]


def test_the_pages_are_the_readme_and_every_page_in_docs() -> None:
    assert runner.doc_pages() == [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert (ROOT / "docs" / "replays.md") in runner.doc_pages()
