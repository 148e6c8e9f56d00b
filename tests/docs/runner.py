"""Run the shell commands of README.md and docs/*.md as a reader would, so they cannot rot.

What is a command. Every fenced block in the docs says its language, and the language says what the runner does:

- ```sh: every line is a command (a line ending in `\\`, or an unfinished `for ... do`, goes on to the next);
- ```console: a transcript: lines starting with `$ ` are commands, the lines after them their output;
- ```text, ```json, ```python, ```yaml: not commands (diagrams, output, payloads, code).

A block without a language, or with one the runner does not know, is an error: nothing escapes by accident.
Commands in running text (inline code) are not run; a command worth running goes in a block.

Markers. A command's comment (after `#`), or a block's info string after the language (```sh needs: pulumi),
may say:

- `needs: aws` (a real AWS account), `needs: pulumi` (the Pulumi CLI), `needs: docker`, `needs: minutes`
  (longer than this runner's budget): the command is not run. A command that calls `aws`, `awscurl`,
  `pulumi` or `docker` must say so, whether or not the program happens to be installed here.
- `until Ctrl-C`: a server. It is started in the background, and the next command runs once it is ready (the
  ports it was given answer and, for the local stack, its env file is written); at the end of the page it gets
  SIGINT, as from Ctrl-C, and must stop.
- `answers 202` (or `answers 200, 404`): the HTTP statuses its `curl` calls must get; without it, each call
  must answer 2xx.
- `exits 4`: the exit code it must end with (0 without it).

Output. A comment that starts with `{` or `[` (`curl ... /aggregates/acc-1  # {"version":2, ...}`), and in a
transcript an output line that does, is what the command must print: `...` stands for anything, white space
does not count. Other output (a report, a log line) is an illustration and is not compared.

How a page runs. One page is one terminal session: one `bash` that keeps its variables, working folder and
exports from one command to the next (so `. .venv/bin/activate` and `source .devstack/env` work as written),
started in a copy of the repository (its `.venv` linked to the real one) with a fresh terminal's environment:
no virtualenv on PATH, no AWS_* or ES_* variable, an empty HOME. Commands run exactly as written, except that
every port a page names (localhost:8080, --serve 8081, ...) is mapped to a free one, and the local stack's
default port is passed explicitly, so pages can run side by side with each other and with anything else on
this machine. Each `curl` call's HTTP status is recorded (a shell function wraps curl with --write-out).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_LANGUAGES = {"sh", "console"}
OTHER_LANGUAGES = {"text", "json", "python", "yaml"}
NEEDS = {
    "aws": "a real AWS account",
    "pulumi": "the Pulumi CLI",
    "docker": "Docker",
    "minutes": "longer than the doc runner's budget",
}
# Programs that cannot run here: a command calling one must carry the need.
PROGRAM_NEEDS = {"aws": "aws", "awscurl": "aws", "pulumi": "pulumi", "docker": "docker"}
COMMAND_TIMEOUT_S = 240.0  # the whole demo takes about 25 s alone, minutes on a machine under load
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
HTTP_MARK = "__doc_http__"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_NEEDS = re.compile(r"\bneeds:\s*(?P<words>[a-z-]+(?:\s*,\s*[a-z-]+)*)")
_ANSWERS = re.compile(r"\banswers\s+(?P<codes>\d{3}(?:\s*(?:,|or)\s*\d{3})*)")
_EXITS = re.compile(r"\bexits\s+(?P<code>\d+)")
_UNTIL = re.compile(r"\buntil Ctrl-C\b")
_HOST_PORT = re.compile(r"(?<![\w.-])(?P<host>localhost|127\.0\.0\.1):(?P<port>\d{2,5})\b")
_PORT_FLAG = re.compile(r"(?P<flag>--(?:aws-)?port|--serve)(?P<sep>[ =])(?P<port>\d{2,5})\b")
_PREFIX_WORDS = {"then", "do", "else", "!", "time", "exec", "env", "{", "if", "while", "until"}
_DEVSTACK = re.compile(r"^\s*(?:make run\b|(?:\S*/)?python3?\s+-m\s+devstack\b(?!\s+demo))")
DEVSTACK_PORT = 8080  # python -m devstack's default API port
DEFAULT_ENV_FILE = ".devstack/env"


class DocError(Exception):
    """A page the runner cannot read: a block without a language, an unknown marker, an unfinished command."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    info: str  # the info string after the language
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    path: Path
    line: int
    text: str
    needs: frozenset[str] = frozenset()
    server: bool = False
    answers: frozenset[int] | None = None
    exits: int = 0
    shows: tuple[str, ...] = ()  # output it must show (`...` stands for anything)

    @property
    def where(self) -> str:
        try:
            return f"{self.path.relative_to(ROOT)}:{self.line}"
        except ValueError:
            return f"{self.path}:{self.line}"

    @property
    def runnable(self) -> bool:
        return not self.needs


# -- reading the pages -----------------------------------------------------------------------------------------


def doc_pages(root: Path = ROOT) -> list[Path]:
    """README.md and every page in docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown page. Raises DocError for a block without a (known) language."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise DocError(f"{path.name}:{start}: a fenced block that never closes")
        i += 1
        language, _, rest = info.partition(" ")
        if not language:
            raise DocError(
                f"{path.name}:{start}: a fenced block without a language: say ```sh or ```console (commands "
                f"the doc test runs), or ```text / ```json / ```python / ```yaml"
            )
        if language not in RUN_LANGUAGES | OTHER_LANGUAGES:
            raise DocError(f"{path.name}:{start}: the doc test does not know the language {language!r}")
        indent = len(opening["indent"])
        found.append(Block(path, start, language, rest.strip(), tuple(line[indent:] for line in body)))
    return found


def commands(block: Block) -> list[Command]:
    """The commands of one block (none for a language that holds no commands)."""
    if block.language not in RUN_LANGUAGES:
        return []
    block_needs = _needs(block.info, block.path, block.line)
    found: list[Command] = []
    pending: list[str] = []
    first = 0
    for number, line in enumerate(block.lines, block.line + 1):
        if not pending:
            if block.language == "console":
                if not line.startswith("$ "):
                    if found and line.lstrip().startswith(("{", "[")):
                        found[-1] = replace(found[-1], shows=(*found[-1].shows, line.strip()))
                    continue  # output
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = number
        pending.append(line)
        text = "\n".join(pending)
        if _complete(text):
            found.append(_command(block, first, text, block_needs))
            pending = []
    if pending:
        raise DocError(f"{block.path.name}:{first}: the command never ends (an open quote, loop or `\\`)")
    return found


def page_commands(path: Path) -> list[Command]:
    return [command for block in blocks(path) for command in commands(block)]


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    return subprocess.run(["bash", "-n", "-c", text], capture_output=True).returncode == 0


def _command(block: Block, line: int, text: str, block_needs: frozenset[str]) -> Command:
    comment = "\n".join(c for c in (_comment(physical) for physical in text.splitlines()) if c)
    needs = block_needs | _needs(comment, block.path, line)
    answers = _ANSWERS.search(comment)
    exits = _EXITS.search(comment)
    shows = tuple(c.strip() for c in comment.splitlines() if c.strip().startswith(("{", "[")))
    return Command(
        block.path,
        line,
        text,
        needs=needs,
        server=bool(_UNTIL.search(comment)),
        answers=frozenset(int(c) for c in re.findall(r"\d{3}", answers["codes"])) if answers else None,
        exits=int(exits["code"]) if exits else 0,
        shows=shows,
    )


def _needs(text: str, path: Path, line: int) -> frozenset[str]:
    words: set[str] = set()
    for match in _NEEDS.finditer(text):
        for word in re.split(r"\s*,\s*", match["words"]):
            if word not in NEEDS:
                raise DocError(f"{path.name}:{line}: unknown 'needs: {word}' (known: {', '.join(NEEDS)})")
            words.add(word)
    return frozenset(words)


def _comment(line: str) -> str | None:
    """The comment of one physical line of shell: from a `#` that starts a word, outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[i + 1 :]
    return None


def _code(text: str) -> str:
    """The command without its comments."""
    return "\n".join(
        line if (c := _comment(line)) is None else line[: len(line) - len(c) - 1]
        for line in text.splitlines()
    )


def unmarked_programs(command: Command) -> list[str]:
    """Programs the command calls that cannot run here and that its markers do not admit."""
    wanted = {PROGRAM_NEEDS[name] for name in programs(_code(command.text)) if name in PROGRAM_NEEDS}
    return sorted(wanted - command.needs)


def programs(code: str) -> set[str]:
    """The programs a line of shell calls: the first word of each simple command (roughly: quotes are not
    parsed, so a separator inside a string can add a name; that only ever asks for a marker too many)."""
    names = set()
    for segment in re.split(r"\$\(|[;&|()`\n]", code):
        words = segment.split()
        while words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]) or words[0] in _PREFIX_WORDS):
            words.pop(0)
        if words:
            names.add(words[0])
    return names


# -- ports -----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ports:
    """A free port for every port a page names, the same one each time it is named."""

    mapped: dict[int, int] = field(default_factory=dict)

    def __call__(self, documented: int) -> int:
        if documented == 0:
            return 0
        if documented not in self.mapped:
            self.mapped[documented] = free_port()
        return self.mapped[documented]

    def rewrite(self, command: Command) -> tuple[str, list[int]]:
        """The command with every named port mapped, and the ports a server was given (to wait for)."""
        given: list[int] = []

        def host(m: re.Match[str]) -> str:
            return f"{m['host']}:{self(int(m['port']))}"

        def flag(m: re.Match[str]) -> str:
            port = self(int(m["port"]))
            if m["flag"] != "--aws-port" and port:
                given.append(port)
            return f"{m['flag']}{m['sep']}{port}"

        # Only the code is rewritten: a comment's `[--port 8080]` documents the default.
        lines = []
        for line in command.text.splitlines():
            comment = _comment(line)
            code = line if comment is None else line[: len(line) - len(comment) - 1]
            code = _PORT_FLAG.sub(flag, _HOST_PORT.sub(host, code))
            lines.append(code if comment is None else f"{code}#{comment}")
        text = "\n".join(lines)
        if command.server and _DEVSTACK.match(text) and not re.search(r"--port\b", _code(text)):
            port = self(DEVSTACK_PORT)
            given.append(port)
            text = _with_devstack_args(text, f"--port {port}")
        return text, given


def _with_devstack_args(text: str, args: str) -> str:
    code = _code(text).rstrip()
    rest = text[len(code) :]
    if code.startswith("make run"):
        quoted = re.search(r"ARGS=(['\"])(.*?)\1", code)
        if quoted:
            code = (
                code[: quoted.start()]
                + f"ARGS={quoted[1]}{quoted[2]} {args}{quoted[1]}"
                + code[quoted.end() :]
            )
        else:
            code += f' ARGS="{args}"'
    else:
        code += f" {args}"
    return code + rest


# -- the terminal ----------------------------------------------------------------------------------------------


def fresh_terminal_environment(home: Path) -> dict[str, str]:
    """A new terminal's environment: this one's PATH without any virtualenv, nothing of AWS or the stack."""
    path = [
        entry
        for entry in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if entry and not (Path(entry).parent / "pyvenv.cfg").exists()
    ]
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TERM": "dumb",
        "SHELL": "/bin/bash",
    }
    for name, value in os.environ.items():
        # The machine's own tools (pyenv's shims, pip's offline mirror), never a project or AWS setting.
        if name.startswith(("PYENV_", "PIP_")) or name in ("USER", "LOGNAME", "TMPDIR", "LC_ALL"):
            env[name] = value
    return env


def copy_repository(dest: Path, root: Path = ROOT) -> Path:
    """A copy of the repository's files to run the pages in, with its .venv linked to the real one."""
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        ".devstack",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "build",
        "*.egg-info",
    )
    shutil.copytree(root, dest, ignore=ignore, symlinks=True)
    if (root / ".venv").exists():
        (dest / ".venv").symlink_to(root / ".venv")
    return dest


_CURL = f"""
curl() {{
  local log rc; log=$(mktemp)
  command curl --write-out '%{{stderr}}{HTTP_MARK} %{{http_code}} %{{method}} %{{url_effective}}\\n' "$@" 2> "$log"
  rc=$?
  grep '^{HTTP_MARK} ' "$log" >> "$__doc_http"
  grep -v '^{HTTP_MARK} ' "$log" >&2
  rm -f "$log"
  return $rc
}}
"""


@dataclass
class Outcome:
    command: Command
    ran: str
    exit_code: int | None
    stdout: str
    stderr: str
    http: list[tuple[int, str, str]]
    problem: str | None = None
    seconds: float = 0.0


@dataclass
class _Server:
    command: Command
    ran: str
    process: subprocess.Popen[bytes]
    out: Path
    err: Path


class Terminal:
    """One bash session, as a reader's terminal: commands run one after another in it; servers beside it."""

    def __init__(self, cwd: Path, scratch: Path, ports: Ports | None = None) -> None:
        self.cwd, self.scratch = cwd, scratch
        self.ports = ports or Ports()
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "home").mkdir(exist_ok=True)
        self.environment = fresh_terminal_environment(scratch / "home")
        self._status_r, status_w = os.pipe()
        self._status_fd = status_w
        self._bash = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=open(scratch / "bash.err", "wb"),  # noqa: SIM115 -- lives as long as the shell
            cwd=cwd,
            env=self.environment,
            pass_fds=(status_w,),
            start_new_session=True,
        )
        os.close(status_w)
        self._buffer = b""
        self._count = 0
        self._servers: list[_Server] = []
        self._send(f"__doc_http={shlex.quote(str(scratch / 'http.log'))}\n{_CURL}\n")

    # The shell reports each command's end as "N CODE" on a pipe of its own.
    def _send(self, script: str) -> None:
        assert self._bash.stdin is not None
        self._bash.stdin.write(script.encode())
        self._bash.stdin.flush()

    def _wait_status(self, n: int, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            for line in self._buffer.split(b"\n")[:-1]:
                number, _, code = line.decode().partition(" ")
                if number == str(n):
                    return int(code)
            if self._bash.poll() is not None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._status_r], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(self._status_r, 4096)
                if not chunk:
                    return None
                self._buffer += chunk

    def _shell(self, text: str, timeout: float) -> tuple[int | None, str, str]:
        self._count += 1
        n = self._count
        out, err = self.scratch / f"{n}.out", self.scratch / f"{n}.err"
        self._send(
            f"{{ {text}\n}} > {shlex.quote(str(out))} 2> {shlex.quote(str(err))} < /dev/null\n"
            f'echo "{n} $?" >&{self._status_fd}\n'
        )
        code = self._wait_status(n, timeout)
        return code, _read(out), _read(err)

    def run(self, command: Command, rewrite: bool = True) -> Outcome:
        """Run one command (start it, for a server); the outcome says what went wrong, if anything."""
        ran, given = self.ports.rewrite(command) if rewrite else (command.text, [])
        if command.server:
            return self._start_server(command, ran, given)
        http_log = self.scratch / "http.log"
        http_log.write_text("")
        started = time.monotonic()
        code, out, err = self._shell(ran, COMMAND_TIMEOUT_S)
        http = _http(http_log)
        outcome = Outcome(command, ran, code, out, err, http, seconds=time.monotonic() - started)
        if code is None:
            outcome.problem = (
                f"did not finish within {COMMAND_TIMEOUT_S:.0f}s"
                if self._bash.poll() is None
                else "the shell ended (an `exit`, or a syntax error)"
            )
            self.close()
        elif code != command.exits:
            hint = ""
            if code == 127:
                hint = " (a program is missing: if it cannot run here, mark the command `needs: ...`)"
            outcome.problem = f"exit code {code}, expected {command.exits}{hint}"
        else:
            outcome.problem = _http_problem(command, http, out, err) or _shows_problem(command, out)
        return outcome

    def _snapshot(self) -> tuple[dict[str, str], Path]:
        env_file, cwd_file = self.scratch / "env.snapshot", self.scratch / "cwd.snapshot"
        self._shell(f"env -0 > {shlex.quote(str(env_file))}; pwd > {shlex.quote(str(cwd_file))}", 10)
        pairs = (item.partition("=") for item in env_file.read_text().split("\0") if item)
        return {k: v for k, _, v in pairs}, Path(cwd_file.read_text().strip())

    def _start_server(self, command: Command, ran: str, ports: list[int]) -> Outcome:
        if not ports:
            return Outcome(
                command,
                ran,
                None,
                "",
                "",
                [],
                problem="a server must name its port (--port N, --serve N) for the runner to know it is up",
            )
        env, cwd = self._snapshot()
        n = len(self._servers) + 1
        out, err = self.scratch / f"server{n}.out", self.scratch / f"server{n}.err"
        process = subprocess.Popen(
            ["bash", "-c", ran],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=open(out, "wb"),  # noqa: SIM115 -- the server's, closed when it ends
            stderr=open(err, "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        server = _Server(command, ran, process, out, err)
        self._servers.append(server)
        env_file = cwd / _env_file(ran) if _DEVSTACK.match(ran) else None
        outcome = Outcome(command, ran, None, "", "", [])
        started = time.monotonic()
        deadline = started + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                outcome.exit_code = process.returncode
                outcome.problem = f"the server ended by itself (exit code {process.returncode})"
                break
            if all(_answers(port) for port in ports) and (env_file is None or env_file.exists()):
                break
            if time.monotonic() > deadline:
                outcome.problem = (
                    f"not ready after {READY_TIMEOUT_S:.0f}s (ports {ports}, env file {env_file})"
                )
                break
            time.sleep(0.1)
        outcome.stdout, outcome.stderr = _read(out), _read(err)
        outcome.seconds = time.monotonic() - started
        return outcome

    def server_output(self, index: int = 0) -> str:
        return _read(self._servers[index].out)

    def stop_servers(self) -> list[Outcome]:
        """Ctrl-C every server (the last started first); each must stop, and not by dying."""
        outcomes = []
        for server in reversed(self._servers):
            outcome = Outcome(server.command, server.ran, None, "", "", [])
            started = time.monotonic()
            if server.process.poll() is not None:
                outcome.problem = f"the server ended by itself (exit code {server.process.returncode})"
            else:
                os.killpg(server.process.pid, signal.SIGINT)
                try:
                    server.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    _kill_group(server.process.pid)
                    server.process.wait()
                    outcome.problem = f"did not stop within {STOP_TIMEOUT_S:.0f}s of Ctrl-C"
                else:
                    # make reports its child's Ctrl-C as "Interrupt" (2); the server itself must exit 0.
                    allowed = {0, 2, 130, -signal.SIGINT} if server.ran.startswith("make ") else {0, 130}
                    if server.process.returncode not in allowed:
                        outcome.problem = f"exit code {server.process.returncode} after Ctrl-C"
            outcome.exit_code = server.process.returncode
            outcome.stdout, outcome.stderr = _read(server.out), _read(server.err)
            outcome.seconds = time.monotonic() - started
            outcomes.append(outcome)
        self._servers.clear()
        return outcomes

    def close(self) -> None:
        for server in self._servers:
            if server.process.poll() is None:
                _kill_group(server.process.pid)
                server.process.wait()
        self._servers.clear()
        if self._bash.poll() is None:
            _kill_group(self._bash.pid)
            self._bash.wait()
        if self._bash.stdin is not None:
            self._bash.stdin.close()
        if self._status_r >= 0:
            os.close(self._status_r)
            self._status_r = -1

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_page(commands_: Iterable[Command], terminal: Terminal) -> tuple[list[Outcome], list[Command]]:
    """Run a page's commands in one terminal, then Ctrl-C its servers: (every outcome, the commands skipped)."""
    outcomes, skipped = [], []
    for command in commands_:
        if not command.runnable:
            skipped.append(command)
            continue
        outcome = terminal.run(command)
        outcomes.append(outcome)
        if terminal._bash.poll() is not None:
            break
    outcomes += terminal.stop_servers()
    return outcomes, skipped


def report(outcomes: Iterable[Outcome]) -> str:
    """What failed, for a person: where, what ran, what it said."""
    parts = []
    for o in outcomes:
        if o.problem is None:
            continue
        lines = [f"{o.command.where}: {o.problem}", f"  command: {o.command.text}"]
        if o.ran != o.command.text:
            lines.append(f"  ran as:  {o.ran}")
        if o.http:
            lines.append("  http:    " + "; ".join(f"{s} {m} {u}" for s, m, u in o.http))
        for name, text in (("stdout", o.stdout), ("stderr", o.stderr)):
            tail = text.strip().splitlines()[-12:]
            if tail:
                lines.append(f"  {name}:")
                lines += [f"    {line}" for line in tail]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _http(log: Path) -> list[tuple[int, str, str]]:
    calls = []
    for line in _read(log).splitlines():
        _, status, method, url = [*line.split(" ", 3), "", "", ""][:4]
        calls.append((int(status) if status.isdigit() else 0, method, url))
    return calls


def _http_problem(command: Command, http: list[tuple[int, str, str]], out: str, err: str) -> str | None:
    if re.match(r"\s*curl\s", _code(command.text)) and not http:
        return "its curl made no call (or its own --write-out hid the status)"
    for status, method, url in http:
        if command.answers is not None:
            if status not in command.answers:
                return f"{method} {url} answered {status}, the page says {sorted(command.answers)}"
        elif not 200 <= status < 300:
            return f"{method} {url} answered {status or 'nothing (no connection)'}"
    return None


def _shows_problem(command: Command, out: str) -> str | None:
    """Each expected output, `...` standing for anything and white space ignored, must be in stdout."""
    flat = re.sub(r"\s+", "", out)
    for pattern in command.shows:
        position = 0
        for piece in re.sub(r"\s+", "", pattern).split("..."):
            found = flat.find(piece, position)
            if found < 0:
                return f"its output does not show {pattern} (no {piece!r} where expected)"
            position = found + len(piece)
    return None


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _env_file(command: str) -> str:
    m = re.search(r"--env-file[ =](\S+)", command)
    return m[1].strip("'\"") if m else DEFAULT_ENV_FILE


def _descendants(pid: int) -> Iterator[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            yield child
            todo.append(child)


def _kill_group(pid: int) -> None:
    """SIGKILL a process group and anything its members started in groups of their own."""
    for child in list(_descendants(pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
