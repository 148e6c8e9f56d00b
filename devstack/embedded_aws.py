"""The embedded AWS: moto's threaded server on loopback, reached over real HTTP by real boto3 clients."""

from __future__ import annotations

import logging
import socket
import urllib.request

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from devstack import moto_fixes

# Credentials for the emulator only. The devstack puts these in its own environment so that no real
# credentials are ever sent, even to loopback.
EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "devstack",
    "AWS_SECRET_ACCESS_KEY": "devstack",
}


class _SerialisedMotoServer(ThreadedMotoServer):
    """moto's threaded server, with its app behind moto_fixes.SerialisedApp (one request at a time)."""

    startup_error: str | None = None

    def _server_entry(self) -> None:
        app = moto_fixes.SerialisedApp(DomainDispatcherApplication(create_backend_app))
        try:
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
        except (OSError, SystemExit) as exc:
            # werkzeug exits the thread on a bind error, and moto's own entry would leave start() waiting.
            self.startup_error = str(exc) or "the server could not start"
            self._server_ready_event.set()
            return
        self._server_ready_event.set()
        self._server.serve_forever()


class EmbeddedAWS:
    """Start, reset and stop moto's server, with the fixes in devstack/moto_fixes.py. `port=0` picks a free
    port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _SerialisedMotoServer(ip_address=host, port=port, verbose=False)
        self._host = host
        self._port = port
        self._started = False

    def start(self) -> str:
        """Start the server (and install the fixes); raise OSError with a clear message if it cannot listen."""
        moto_fixes.install()
        # werkzeug logs every request at INFO to stderr; the devstack's own log is what a user reads.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        if self._port:
            _check_free(self._host, self._port)
        self._server.start()
        if self._server.startup_error is not None:
            raise OSError(
                f"the embedded AWS cannot listen on {self._host}:{self._port}: {self._server.startup_error}"
            )
        self._started = True
        return self.endpoint_url

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def reset(self) -> None:
        """Clear all state (about 30 ms): tables, streams and their records."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        if self._started:
            self._server.stop()
            self._started = False

    def __enter__(self) -> EmbeddedAWS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(
                exc.errno, f"the embedded AWS cannot listen on {host}:{port}: {exc.strerror}"
            ) from exc
