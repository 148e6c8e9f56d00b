"""The whole local stack as one object: the embedded AWS, every table and stream, the stream pollers and the
API Gateway stand-in, with the handlers running in this process.

    with LocalStack(port=0) as stack:
        print(stack.url)           # the API
        stack.settings             # names, region, endpoint (also put in os.environ while it runs)

`python -m devstack` runs one from the command line; tests and `python -m benchmarks ingest` run one in-process.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING

import orjson

from devstack.embedded_aws import EMULATOR_CREDENTIALS, EmbeddedAWS
from devstack.fakes import ExchangeRateService, FakeService, LedgerExportService
from devstack.http_api import ApiGateway, Response, message_response
from devstack.lambda_runtime import Handler, LocalFunction
from devstack.pollers import (
    DiscardedBatch,
    DiscardedBatches,
    MappingPoller,
    PollerOptions,
    SqsDeadLetters,
    source_for,
)
from eventlog.aws import dynamodb_client, dynamodbstreams_client, kinesis_client
from eventlog.provision import create_dead_letter_queues, create_resources, sqs_client
from eventlog.settings import (
    DEFAULT_REGION,
    SERVICE_ENDPOINT_VARIABLES,
    Settings,
    name_variables,
    resolve_region,
)
from eventlog.topology import MAPPINGS, ROUTES, MappingSpec, RouteSpec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger("devstack")

# Never let a developer's real credentials (or a profile that resolves to them) reach the emulator, and never
# let a service's own endpoint (which boto3 and the AWS CLI prefer to AWS_ENDPOINT_URL) send a call elsewhere.
_UNSET_VARIABLES = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    *SERVICE_ENDPOINT_VARIABLES,
)
# Handlers' Powertools settings when the user has not chosen: quiet logs, no EMF metric lines on stdout.
POWERTOOLS_DEFAULTS = {
    "POWERTOOLS_SERVICE_NAME": "eventsourcing",
    "POWERTOOLS_METRICS_NAMESPACE": "EventSourcing",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


# The external systems of the example service: the variable that names each, and what it is.
EXTERNAL_URL_VARIABLES = {
    "ES_EXCHANGE_RATES_URL": "exchange rates",
    "ES_LEDGER_EXPORT_URL": "ledger export",
}
# What the control route may change: the stack's own settings, never AWS_* (credentials, the endpoint).
_CONTROL_VARIABLE = re.compile(r"^ES_[A-Z0-9_]{1,100}$")


class StackError(Exception):
    """The stack cannot start, for a reason the user can act on (the message is one line)."""


class LocalStack:
    """The local stack. `start()` brings it up (and puts its settings in os.environ), `stop()` takes it down
    (and puts the environment back).

    - `port`: the API's port (0 picks a free one); `aws_port`: the embedded AWS's port (0 = random).
    - `endpoint_url`: use an AWS endpoint that is already running (a test session's emulator) instead of
      starting one.
    - `handlers`: stand-ins for some functions' handlers, by function key (`{"query": my_handler}`).
    - `fakes`: start the fake external systems (devstack/fakes.py) the service function's gateways call, and
      point the functions at them (ES_EXCHANGE_RATES_URL, ES_LEDGER_EXPORT_URL), except where the environment
      already names a URL.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        aws_port: int = 0,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str | None = None,
        handlers: Mapping[str, Handler] | None = None,
        mappings: tuple[MappingSpec, ...] = MAPPINGS,
        routes: tuple[RouteSpec, ...] = ROUTES,
        poller_options: PollerOptions | None = None,
        fakes: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.aws_port = aws_port
        self._given_endpoint = endpoint_url
        self._region = region
        self._prefix = prefix
        self._handlers = dict(handlers or {})
        self.mappings = mappings
        self.routes = routes
        self._poller_options = poller_options
        self._want_fakes = fakes
        self.rates: ExchangeRateService | None = None
        self.ledger: LedgerExportService | None = None
        self.discarded = DiscardedBatches()
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: list[MappingPoller] = []
        self._aws: EmbeddedAWS | None = None
        self._gateway: ApiGateway | None = None
        self._settings: Settings | None = None
        self._saved_env: dict[str, str | None] = {}
        self._started = False

    # -- what a caller reads ---------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise RuntimeError("the stack is not started")
        return self._settings

    @property
    def url(self) -> str:
        """The API's base URL."""
        if self._gateway is None:
            raise RuntimeError("the stack is not started")
        return self._gateway.url

    @property
    def endpoint_url(self) -> str:
        """The embedded AWS endpoint."""
        return self.settings.endpoint_url or ""

    def environment(self) -> dict[str, str]:
        """The variables that point another process (the replayer, the benchmarks, boto3, the AWS CLI) at this
        stack. With `unset_variables()` unset, they are all such a process needs, whatever else its shell has
        set, and they agree with each other (Settings.from_env reads them back to `settings`)."""
        external = {name: os.environ[name] for name in EXTERNAL_URL_VARIABLES if os.environ.get(name)}
        return {**self._own_environment(), **external, "ES_API_URL": self.url}

    def unset_variables(self) -> list[str]:
        """What a shell must not keep to reach this stack: real credentials and profiles (which must never reach
        the emulator), a service's own endpoint (the AWS CLI would prefer it), and names of another stack that
        `environment()` does not set."""
        exported = self.environment()
        return [*_UNSET_VARIABLES, *(name for name in name_variables() if name not in exported)]

    def external_systems(self) -> dict[str, str]:
        """The external systems the functions call: name -> URL (the fakes this stack started, or the URLs the
        environment named)."""
        return {
            label: os.environ[name] for name, label in EXTERNAL_URL_VARIABLES.items() if os.environ.get(name)
        }

    def export_lines(self) -> list[str]:
        """`export NAME=value` lines for a POSIX shell (and the unset that keeps real credentials out)."""
        lines = [f"unset {' '.join(self.unset_variables())}"]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in self.environment().items()]
        return lines

    def resource_names(self) -> dict[str, str]:
        """Every table and stream: logical key -> physical name."""
        s = self.settings
        names = {f"table {key}": s.table(key) for key in s.table_names}
        names.update({f"stream {key}": s.stream(key) for key in s.stream_names})
        names.update({f"queue {m.key}": m.dead_letter_queue(s.prefix) for m in self.mappings})
        return names

    def discarded_batches(self) -> list[DiscardedBatch]:
        """Batches the pollers gave up on after their retries ran out (also sent, as Lambda's on-failure
        record, to each mapping's dead-letter queue on the embedded AWS)."""
        return self.discarded.snapshot()

    # -- life cycle ------------------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Bring everything up. Raises StackError (one line) for what the user can fix, e.g. a taken port."""
        if self._started:
            return self
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        settings = self._resolve()
        # Powertools reads its settings when a handler module is imported, so they go in first.
        self._set_env({k: v for k, v in POWERTOOLS_DEFAULTS.items() if k not in os.environ})
        self.functions = self._load_functions(settings.prefix, settings.region)
        # The API's port is what a user picks by hand: check it before starting anything slow.
        self._gateway = self._bind_gateway()
        endpoint = self._given_endpoint or self._start_aws()
        self._settings = replace(settings, endpoint_url=endpoint)
        env: dict[str, str | None] = dict.fromkeys(_UNSET_VARIABLES)
        env.update(dict.fromkeys(name_variables()))  # the names are exactly the ones below
        env.update(self._own_environment())
        env.update(self._start_fakes())
        self._set_env(env)
        _reset_handler_runtime()
        dynamodb = dynamodb_client(self._settings)
        create_resources(self._settings, dynamodb, kinesis_client(self._settings))
        sqs = sqs_client(self._settings)
        create_dead_letter_queues(self._settings, sqs, self.mappings)
        self._start_pollers(dynamodb, SqsDeadLetters(sqs, self._settings.prefix, self.mappings))
        self._gateway.start()
        log.info("devstack up: API %s, AWS %s", self._gateway.url, endpoint)

    def _resolve(self) -> Settings:
        """The stack's region and names, from the environment as every command resolves them (two settings
        that disagree are a StackError, not a choice); a region or prefix given to this stack wins. The region
        defaults to the devstack's own, never a profile's (the stack ignores profiles); the endpoint is the
        stack's own, filled in once it runs."""
        env = {k: v for k, v in os.environ.items() if k not in _UNSET_VARIABLES and k != "AWS_ENDPOINT_URL"}
        if self._prefix:
            # A prefix given to this stack names everything it runs: table and stream names left in the
            # environment (a shell that sourced another stack's exports) must not point it elsewhere.
            for name in name_variables():
                env.pop(name, None)
            env["ES_NAME_PREFIX"] = self._prefix
        if self._region:
            env.pop("AWS_DEFAULT_REGION", None)
            env["AWS_REGION"] = self._region
        try:
            env["AWS_REGION"] = resolve_region(env, default=DEFAULT_REGION, profile=False)
            env.pop("AWS_DEFAULT_REGION", None)
            return Settings.from_env(env)
        except ValueError as exc:
            raise StackError(str(exc)) from exc

    def _own_environment(self) -> dict[str, str]:
        # What the functions see and another process needs: the emulator's credentials, the region under both
        # the names boto3 and the AWS CLI read, the endpoint and the names (see Settings.environment()).
        region = self.settings.region
        return {
            **EMULATOR_CREDENTIALS,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            **self.settings.environment(),
        }

    def stop(self) -> None:
        """Stop the API, then the pollers (each finishes the batch in hand), then the embedded AWS; put the
        environment back as it was. Safe to call more than once."""
        if self._gateway is not None:
            self._gateway.stop()
        for poller in self.pollers:
            poller.stop()
        self.pollers = []
        for fake in (self.rates, self.ledger):
            if fake is not None:
                fake.stop()
        self.rates = self.ledger = None
        if self._aws is not None:
            self._aws.stop()
            self._aws = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        if self._started:
            _reset_handler_runtime()
        self._started = False

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- parts -----------------------------------------------------------------------------------------------

    def _load_functions(self, prefix: str, region: str) -> dict[str, LocalFunction]:
        keys = {m.function for m in self.mappings} | {r.function for r in self.routes}
        unknown = set(self._handlers) - keys
        if unknown:
            # A misspelt key would silently leave the real handler in place.
            raise ValueError(
                f"handlers given for functions the stack does not run: {', '.join(sorted(unknown))}"
            )
        functions: dict[str, LocalFunction] = {}
        for key in sorted(keys):
            try:
                functions[key] = LocalFunction.load(key, prefix, region, self._handlers.get(key))
            except (ImportError, AttributeError) as exc:
                raise StackError(f"cannot load the {key} function's handler: {exc}") from exc
        return functions

    def configure(self, changes: Mapping[str, str | None]) -> dict[str, str | None]:
        """Change the functions' environment while the stack runs (None removes a variable), as
        `aws lambda update-function-configuration --environment` does on AWS: the next invocation of every
        function starts from fresh settings and clients (a new container). Only `ES_*` variables; they are
        put back when the stack stops. Returns the new values."""
        bad = [name for name in changes if not _CONTROL_VARIABLE.match(name)]
        if bad:
            raise ValueError(f"only ES_* variables can be changed here, not {', '.join(sorted(bad))}")
        wrong = [n for n, v in changes.items() if v is not None and not isinstance(v, str)]
        if wrong:
            raise ValueError(f"values must be strings or null: {', '.join(sorted(wrong))}")
        self._set_env(changes)
        _reset_handler_runtime()
        log.info("function environment changed: %s", ", ".join(f"{k}={v}" for k, v in changes.items()))
        return {name: os.environ.get(name) for name in changes}

    def _control(self, method: str, path: str, body: bytes | None) -> Response:
        # The devstack's stand-in for Lambda's UpdateFunctionConfiguration (all functions share a process).
        if path != "/_devstack/environment":
            return message_response(404, f"no devstack control at {path}")
        if method == "GET":
            current = {k: v for k, v in sorted(os.environ.items()) if _CONTROL_VARIABLE.match(k)}
            return Response(200, [("Content-Type", "application/json")], orjson.dumps(current))
        if method != "PUT":
            return message_response(
                405, f"{method} is not allowed here (allowed: GET, PUT)", [("Allow", "GET, PUT")]
            )
        try:
            changes = orjson.loads(body or b"")
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object of variable -> value (or null)")
            result = self.configure(changes)
        except (orjson.JSONDecodeError, ValueError) as exc:
            return message_response(400, str(exc))
        return Response(200, [("Content-Type", "application/json")], orjson.dumps(result))

    def _bind_gateway(self) -> ApiGateway:
        try:
            return ApiGateway(self.functions, self.routes, self.host, self.port, control=self._control)
        except OSError as exc:
            raise StackError(_listen_error("the API", self.host, self.port, "--port", exc)) from exc

    def _start_fakes(self) -> dict[str, str | None]:
        """Start the fake external systems the environment does not already name; their URL variables."""
        if not self._want_fakes:
            return {}
        urls: dict[str, str | None] = {}
        started: list[FakeService] = []
        if not os.environ.get("ES_EXCHANGE_RATES_URL"):
            self.rates = ExchangeRateService().start()
            started.append(self.rates)
            urls["ES_EXCHANGE_RATES_URL"] = self.rates.url
        if not os.environ.get("ES_LEDGER_EXPORT_URL"):
            self.ledger = LedgerExportService().start()
            started.append(self.ledger)
            urls["ES_LEDGER_EXPORT_URL"] = self.ledger.url
        for fake in started:
            log.info("fake %s on %s", fake.name, fake.url)
        return urls

    def _start_aws(self) -> str:
        host = "127.0.0.1"
        aws = EmbeddedAWS(host=host, port=self.aws_port)
        try:
            # The bind is the one check of the port (nothing probes it first); it happens in this thread, so
            # its error is this call's.
            endpoint = aws.start()
        except OSError as exc:
            bind_error = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            raise StackError(
                _listen_error("the embedded AWS", host, self.aws_port, "--aws-port", bind_error)
            ) from exc
        self._aws = aws
        return endpoint

    def _start_pollers(self, dynamodb: DynamoDBClient, dead_letters: SqsDeadLetters) -> None:
        settings = self.settings
        kinesis = kinesis_client(settings)
        streams = dynamodbstreams_client(settings)
        for mapping in self.mappings:
            source = source_for(
                mapping, settings, kinesis=kinesis, dynamodb=dynamodb, dynamodbstreams=streams
            )
            poller = MappingPoller(
                mapping,
                source,
                self.functions[mapping.function],
                options=self._poller_options,
                discarded=self.discarded,
                dead_letters=dead_letters,
            )
            poller.start()
            self.pollers.append(poller)

    def _set_env(self, values: Mapping[str, str | None]) -> None:
        for name, value in values.items():
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _reset_handler_runtime() -> None:
    # Handlers cache settings and clients per container; the stack has just repointed the environment.
    from handlers import runtime

    runtime.reset()


def _listen_error(what: str, host: str, port: int, flag: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use ({what} cannot listen there); free it or use {flag}"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {host}:{port} for {what}; pick a port above 1023 with {flag}"
    return f"{what} cannot listen on {host}:{port}: {exc.strerror or exc}"
