"""The embedded AWS: moto's threaded server on loopback, reached over real HTTP by real boto3 clients."""

from __future__ import annotations

import logging
import urllib.request

from moto.moto_server.threaded_moto_server import ThreadedMotoServer

# Credentials for the emulator only. The devstack puts these in its own environment so that no real
# credentials are ever sent, even to loopback.
EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "devstack",
    "AWS_SECRET_ACCESS_KEY": "devstack",
}


class EmbeddedAWS:
    """Start, reset and stop moto's server. `port=0` picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._started = False

    def start(self) -> str:
        # werkzeug logs every request at INFO to stderr; the devstack's own log is what a user reads.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
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
