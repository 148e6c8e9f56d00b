"""`python -m devstack demo`: a scripted session against a running stack, for a newcomer to read.

The session is a list of sections (`SECTIONS`), run in order. Each is a module `devstack/demo_<part>.py`
with a function `section(demo: Demo) -> None` (and a one-line `TITLE`): it drives the stack through `demo`
(HTTP calls to the API, reads of the stack's tables, replays run in-process) and prints what it does and the
gist of each answer. A section checks what it shows and raises `DemoError` when the stack misbehaves, so the
demo also exits non-zero then. To add a part: write its module and add one line to `SECTIONS`.

Sections that replay or read tables need the stack's AWS endpoint as well as its API: `python -m devstack`
writes its environment to `.devstack/env`, and the demo reads it when present (`Demo.environment`).
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from devstack.envfile import EnvFileError, read_env_file
from eventlog.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

T = TypeVar("T")

# The demo's sections, in the order they run: module names, each with `section(demo)` and `TITLE`.
# One line per part; a section's name on the command line (`--section basics`) is what follows `demo_`.
SECTIONS: tuple[str, ...] = (
    "devstack.demo_basics",
    "devstack.demo_gateways",
    "devstack.demo_domain",
    "devstack.demo_rebuild",
)

DEFAULT_URL = "http://127.0.0.1:8080"


class DemoError(Exception):
    """The stack answered something the demo did not expect."""


class Unreachable(DemoError):
    """Nothing answers at the URL."""


class PartFailed(DemoError):
    """A part raised something other than a DemoError (the message names the part)."""


class NeedsStack(DemoError):
    """A section needs something of the stack that the demo was not told (its AWS endpoint)."""


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    """A tiny JSON client over urllib that prints what it sends and the gist of what comes back."""

    def __init__(self, base_url: str, out: TextIO) -> None:
        self.base_url = base_url.rstrip("/")
        self.out = out

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        show: bool = True,
    ) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if show:
            extra = "".join(f" [{n}: {v}]" for n, v in (headers or {}).items())
            self.say(f"  -> {method} {path}{extra}" + (f" {json.dumps(body)}" if body is not None else ""))
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = Answer(response.status, _json(response.read()), dict(response.headers.items()))
        except urllib.error.HTTPError as error:
            answer = Answer(error.code, _json(error.read()), dict(error.headers.items()))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(
                f"no stack answers at {self.base_url} ({reason}); start one with `python -m devstack` "
                "(or `make run`) in another terminal, or pass --url"
            ) from exc
        if show:
            self.say(f"  <- {answer.status} {gist(answer.body)}")
        return answer

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def gist(body: Any) -> str:
    """The interesting part of an answer, on one line."""
    if not isinstance(body, dict):
        return json.dumps(body)
    keep = (
        "error",
        "message",
        "event_id",
        "status",
        "version",
        "outcome",
        "outcome_reason",
        "reason",
        "state",
    )
    return json.dumps({k: body[k] for k in keep if k in body} or body, ensure_ascii=False)


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class Demo:
    """What a section drives the stack with: the API client, the stack's environment, and helpers.

    - `suffix`: random per run, for aggregate ids that no earlier run used (`f"acct-{demo.suffix}"`).
    - `environment`: the variables that point at the stack (the demo's own environment, overlaid with
      `.devstack/env` when `python -m devstack` wrote one); `settings` are read from it.
    - `deploy(...)` changes the running stack's settings (a code version, a rule): a stand-in for deploying.
      A function that reads such a setting must read it per invocation or through `handlers.runtime`'s
      per-container caches (which `deploy` resets), never once at import.
    """

    def __init__(self, client: Client, timeout: float, environment: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.timeout = timeout
        self.suffix = secrets.token_hex(3)
        self.environment: dict[str, str] = dict(os.environ if environment is None else environment)
        self._settings: Settings | None = None
        self._dynamodb: DynamoDBClient | None = None

    # -- the stack's AWS side ------------------------------------------------------------------------------

    def need(self, *names: str) -> dict[str, str]:
        """The values of these variables, or a DemoError saying how to get them (start the stack with
        `python -m devstack`, which writes .devstack/env)."""
        missing = [name for name in names if not self.environment.get(name)]
        if missing:
            raise NeedsStack(
                f"this section needs {', '.join(missing)}: run the demo against `python -m devstack` "
                "from the same folder (it writes .devstack/env), or export the lines it prints"
            )
        return {name: self.environment[name] for name in names}

    @property
    def settings(self) -> Settings:
        """The stack's settings (tables, streams, endpoint), from `environment`."""
        if self._settings is None:
            self.need("AWS_ENDPOINT_URL")
            try:
                self._settings = Settings.from_env(self.environment)
            except ValueError as exc:
                raise DemoError(str(exc)) from exc
        return self._settings

    def dynamodb(self) -> DynamoDBClient:
        """A DynamoDB client on the stack's endpoint (made once)."""
        if self._dynamodb is None:
            from eventlog.aws import dynamodb_client

            self._dynamodb = dynamodb_client(self.settings)
        return self._dynamodb

    def replay(self, *argv: str) -> None:
        """Run the replayer in this process against the stack (`python -m replayer ARGV --progress none`)."""
        from replayer.cli import main as replayer_main

        self.settings  # noqa: B018 -- fail early, with the hint, when there is no endpoint
        self.say(f"  $ python -m replayer {' '.join(argv)}")
        code = replayer_main([*argv, "--progress", "none"], environ=self.environment)
        if code != 0:
            raise DemoError(f"the replayer exited {code} for: {' '.join(argv)}")

    def deploy(self, changes: Mapping[str, str | None], what: str) -> None:
        """ "Deploy" a code change to the running stack by changing its functions' settings (`ES_*` variables;
        None removes one), as `aws lambda update-function-configuration` would; every function starts afresh.
        `what` says in words what changes (printed)."""
        shown = " ".join(f"{k}={'(unset)' if v is None else v}" for k, v in changes.items())
        self.say(f"  ~ deploy: {what} ({shown})")
        answer = self.client.call("PUT", "/_devstack/environment", dict(changes), show=False)
        if answer.status == 404:
            raise NeedsStack(
                "this section changes the functions' settings, which only the devstack (python -m devstack) "
                "lets the demo do"
            )
        if answer.status != 200:
            raise DemoError(f"PUT /_devstack/environment answered {answer.status} {gist(answer.body)}")

    def wait_for(self, check: Callable[[], T | None], what: str, interval: float = 0.1) -> T:
        """Call `check` until it returns something other than None (or False), and return that; a DemoError
        naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + self.timeout
        while True:
            value = check()
            if value is not None and value is not False:
                return value
            if time.monotonic() > deadline:
                raise DemoError(f"still waiting after {self.timeout:.0f}s for {what}")
            time.sleep(interval)

    # -- the API -------------------------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.client.say(text)

    def step(self, title: str) -> None:
        self.say()
        self.say(f"== {title}")

    def post(
        self,
        aggregate_id: str,
        type_: str,
        payload: dict[str, Any],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        body: dict[str, Any] = {"type": type_, "payload": payload}
        if expected_version is not None:
            body["expected_version"] = expected_version
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.client.call("POST", f"/aggregates/{aggregate_id}/events", body, headers)

    def accepted(self, answer: Answer) -> str:
        if answer.status != 202 or not isinstance(answer.body, dict) or "event_id" not in answer.body:
            raise DemoError(f"expected 202 with an event_id, got {answer.status} {gist(answer.body)}")
        return str(answer.body["event_id"])

    def settle(self, event_id: str) -> dict[str, Any]:
        """Poll GET /events/{id} until the event is rejected, or committed with the domain's outcome."""
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self.client.call("GET", f"/events/{event_id}", show=False)
            body = answer.body if isinstance(answer.body, dict) else {}
            if answer.status == 200 and (
                body.get("status") == "rejected"
                or (body.get("status") == "committed" and body.get("outcome") not in (None, "pending"))
            ):
                shown = {k: v for k, v in body.items() if k != "event_id"}
                self.say(f"     GET /events/{event_id[:8]}... -> {gist(shown)}")
                return body
            if answer.status not in (200, 404):
                raise DemoError(f"GET /events/{event_id} answered {answer.status} {gist(answer.body)}")
            if time.monotonic() > deadline:
                raise DemoError(
                    f"event {event_id} is still {body.get('status', 'unknown')} after {self.timeout:.0f}s: "
                    "are the stack's pollers running? (see its log)"
                )
            time.sleep(0.1)

    def commit(
        self, aggregate_id: str, type_: str, payload: dict[str, Any], outcome: str = "applied"
    ) -> dict[str, Any]:
        """POST an event, wait until it is committed, check the domain's outcome; returns its status."""
        status = self.settle(self.accepted(self.post(aggregate_id, type_, payload)))
        if status.get("status") != "committed" or status.get("outcome") != outcome:
            raise DemoError(f"expected the {type_} to be committed and {outcome}, got {gist(status)}")
        return status

    def state(self, aggregate_id: str) -> dict[str, Any]:
        answer = self.client.call("GET", f"/aggregates/{aggregate_id}")
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise DemoError(f"GET /aggregates/{aggregate_id} answered {answer.status} {gist(answer.body)}")
        return answer.body


def section_name(module: str) -> str:
    """`devstack.demo_basics` -> `basics`: how a section is named on the command line."""
    return module.rsplit(".", 1)[-1].removeprefix("demo_")


def select_sections(names: Sequence[str] | None) -> list[str]:
    """The modules of the named sections (all of them, in order, when `names` is empty or None)."""
    if not names:
        return list(SECTIONS)
    known = {section_name(m): m for m in SECTIONS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"no demo section {', '.join(unknown)} (known: {', '.join(known)})")
    return [m for m in SECTIONS if section_name(m) in names]


def run_sections(demo: Demo, modules: Sequence[str]) -> None:
    """Run each section in order; the first one that raises stops the demo. An error that is not a DemoError
    (an AWS call that failed, a bug) becomes one, naming the part, so the user sees one line."""
    demo.client.call("GET", "/aggregates/demo-probe", show=False)  # is anyone there? (Unreachable if not)
    for index, module_name in enumerate(modules, 1):
        module = importlib.import_module(module_name)
        title = getattr(module, "TITLE", section_name(module_name))
        demo.say()
        demo.say(f"#### Part {index} of {len(modules)}: {title}")
        try:
            module.section(demo)
        except DemoError:
            raise
        except Exception as exc:
            raise PartFailed(f"part {index} ({section_name(module_name)}) failed: {exc!r}") from exc


def run_demo(
    url: str | None = None,
    *,
    timeout: float = 15.0,
    out: TextIO | None = None,
    sections: Sequence[str] | None = None,
    env_file: Path | None = None,
) -> int:
    """Run the scripted session against the stack at `url` (else `ES_API_URL` from `env_file` or the
    environment, else the default port). `sections` names the parts to run (default all); `env_file` is the
    stack's environment as `python -m devstack` wrote it (read when it exists). Returns the exit code: 0 when
    everything went as shown, 1 otherwise (with one line on stderr saying what)."""
    stream = out if out is not None else sys.stdout
    try:
        modules = select_sections(sections)
    except ValueError as exc:
        print(f"devstack demo: {exc}", file=sys.stderr)
        return 2
    saved: dict[str, str | None] = {}
    try:
        from_file = read_env_file(env_file) if env_file is not None else {}
        # The file's variables go in this process's environment for the run: the AWS clients the parts make
        # (and the replayer run in-process) read credentials and the endpoint from it.
        for name, value in from_file.items():
            saved[name] = os.environ.get(name)
            os.environ[name] = value
        environment = dict(os.environ)
        base = url or environment.get("ES_API_URL") or DEFAULT_URL
        demo = Demo(Client(base, stream), timeout, environment)
        demo.say(f"Demo against {base}.")
        try:
            run_sections(demo, modules)
        except Unreachable as exc:
            if url is None and from_file.get("ES_API_URL") == base:
                # A stack killed without a chance to clean up leaves its file behind.
                raise Unreachable(f"{exc} (the URL came from {env_file}: a stack that stopped?)") from exc
            raise
    except (EnvFileError, Unreachable, NeedsStack, PartFailed) as exc:
        print(f"devstack demo: {exc}", file=sys.stderr)
        return 1
    except DemoError as exc:
        print(f"devstack demo: unexpected answer: {exc}", file=sys.stderr)
        return 1
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
    return 0
