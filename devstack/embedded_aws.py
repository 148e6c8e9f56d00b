"""The embedded AWS: moto's threaded server on loopback, reached over real HTTP by real boto3 clients."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from devstack import moto_fixes

# Credentials for the emulator only. The devstack puts these in its own environment so that no real
# credentials are ever sent, even to loopback.
EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "devstack",
    "AWS_SECRET_ACCESS_KEY": "devstack",
}
_BACKLOG = 128


class EmbeddedAWS:
    """Start, reset and stop moto's server, with the fixes in devstack/moto_fixes.py (its app behind
    moto_fixes.SerialisedApp: one request at a time). `port=0` picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Start the server (and install the fixes). Raises OSError, in the caller's thread, when it cannot
        listen: its `errno` is the bind's, its message names the address, and `__cause__` is the bind's own
        error."""
        if self._server is not None:
            return self.endpoint_url
        moto_fixes.install()
        # werkzeug logs every request at INFO to stderr; the devstack's own log is what a user reads.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        listener = _listen(self._host, self._port)
        try:
            app = moto_fixes.SerialisedApp(DomainDispatcherApplication(create_backend_app))
            # Handed a listening socket, werkzeug neither binds again nor exits the process on a bind error
            # (which is what it does, after printing to stderr, when it binds itself).
            server = make_server(
                self._host, self._port, app, True, request_handler=MotoRequestHandler, fd=listener.fileno()
            )
        finally:
            listener.close()  # werkzeug works on its own duplicate of the descriptor
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="embedded-aws", daemon=True)
        self._thread.start()
        return self.endpoint_url

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded AWS is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def reset(self) -> None:
        """Clear all state (about 30 ms): tables, streams and their records."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        """Stop serving and close the listening socket, so the port is free again at once."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> EmbeddedAWS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound with SO_REUSEADDR as werkzeug and http.server bind theirs: the
    connections a stopped stack closed linger in TIME_WAIT on its port for about a minute, and a socket bound
    without it cannot listen there meanwhile. A port another socket listens on is still refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(_BACKLOG)
    except OSError as exc:
        listener.close()
        raise OSError(
            exc.errno, f"the embedded AWS cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    return listener
