"""`python -m devstack` as a user runs it: in a subprocess, stopped by a signal, or refused a taken port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devstack.envfile import read_env_file

ROOT = Path(__file__).resolve().parents[2]


def devstack(*args: str) -> subprocess.Popen[str]:
    # A shell that knows nothing of the test session's emulator or names.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "ES_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_it_starts_serves_and_stops_cleanly_on_a_signal(signum: int, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    process = devstack("--port", "0", "--env-file", str(env_file))
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("API: http://127.0.0.1:"), first + (
            process.stderr.read() if process.stderr else ""
        )
        url = first.split("API: ", 1)[1].strip()
        banner = [first]
        while not banner[-1].startswith("Ctrl-C stops"):
            banner.append(process.stdout.readline())
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{url}/aggregates/nobody", timeout=10)
        assert missing.value.code == 404
        assert json.loads(missing.value.read())["error"] == "not_found"  # the query handler answered
        written = read_env_file(env_file)  # what `python -m devstack demo` reads
        assert written["ES_API_URL"] == url
        assert written["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")

        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    out = "".join(banner)
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in out
    assert "export ES_EVENTS_TABLE=es-local-events" in out
    assert "table events" in out
    assert "stopped" in err
    assert "Traceback" not in err
    assert not env_file.exists()  # a stopped stack leaves no file pointing at it


def test_a_taken_port_is_one_clear_line_and_a_non_zero_exit() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = devstack("--port", str(port))
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip().count("\n") == 0, err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port" in err
    assert out == ""


def test_a_bad_port_is_a_usage_error() -> None:
    process = devstack("--port", "http")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "not a port number" in err
    assert "Traceback" not in err
