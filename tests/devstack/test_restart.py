"""Stopping the stack and starting it again at once, on the same fixed ports, as `make run` twice does.

The ports then hold the connections the stack closed itself in TIME_WAIT (for about a minute): a listener that
binds without SO_REUSEADDR cannot listen there until they expire. The tests make the server side close many
connections first, and check the kernel really holds them in TIME_WAIT before restarting.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import embedded_aws
from devstack.__main__ import main as devstack_main
from devstack.stack import LocalStack, StackError

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 200
TIME_WAIT = "06"  # the state column of /proc/net/tcp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def closed_by_the_server(port: int, count: int = CONNECTIONS) -> None:
    """`count` requests with `Connection: close`, each read to the end: the server closes first, so the
    TIME_WAIT entries are on its side, on its listening port."""
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(request)
            while client.recv(65536):
                pass  # until the server's FIN


def time_wait_on(port: int) -> int:
    """How many connections whose local port is `port` the kernel holds in TIME_WAIT."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == TIME_WAIT:
                count += 1
    return count


needs_proc = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads TIME_WAIT from /proc/net/tcp"
)


def devstack(*args: str, env_file: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "ES_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", *args, "--env-file", str(env_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_banner(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    lines = [process.stdout.readline()]
    if not lines[0].startswith("API: "):
        process.kill()
        _, err = process.communicate(timeout=30)
        pytest.fail(f"the stack did not start (exit {process.returncode}): {lines[0]}{err}")
    while not lines[-1].startswith("Ctrl-C stops"):
        lines.append(process.stdout.readline())
    return "".join(lines)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return err


@needs_proc
def test_python_m_devstack_starts_again_at_once_on_ports_full_of_time_wait(tmp_path: Path) -> None:
    api_port, aws_port = free_port(), free_port()
    args = ("--port", str(api_port), "--aws-port", str(aws_port))
    first = devstack(*args, env_file=tmp_path / "env")
    try:
        wait_for_banner(first)
        closed_by_the_server(aws_port)
        closed_by_the_server(api_port)
        stop(first)
    finally:
        if first.poll() is None:
            first.kill()
    assert time_wait_on(aws_port) > 0, "the test needs connections in TIME_WAIT on the embedded AWS's port"
    assert time_wait_on(api_port) > 0, "the test needs connections in TIME_WAIT on the API's port"

    second = devstack(*args, env_file=tmp_path / "env")
    try:
        banner = wait_for_banner(second)
        err = stop(second)
    finally:
        if second.poll() is None:
            second.kill()
    assert f"API: http://127.0.0.1:{api_port}" in banner
    assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{aws_port}" in banner
    assert "Traceback" not in err


@needs_proc
def test_a_stack_restarted_in_process_listens_on_the_same_ports_again() -> None:
    api_port, aws_port = free_port(), free_port()
    with LocalStack(port=api_port, aws_port=aws_port, fakes=False) as stack:
        closed_by_the_server(aws_port, 50)
        closed_by_the_server(api_port, 50)
        endpoint = stack.endpoint_url
    assert time_wait_on(aws_port) > 0
    with LocalStack(port=api_port, aws_port=aws_port, fakes=False) as again:
        assert again.endpoint_url == endpoint
        assert again.url == f"http://127.0.0.1:{api_port}"


def test_a_taken_aws_port_is_one_line_and_exit_1_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = devstack("--port", "0", "--aws-port", str(port), env_file=tmp_path / "env")
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip().count("\n") == 0, err
    assert err.startswith(f"devstack: port {port} on 127.0.0.1 is already in use (the embedded AWS")
    assert "--aws-port" in err
    assert out == ""


def test_a_start_error_of_the_embedded_aws_reaches_the_caller_as_a_stack_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(host: str, port: int) -> socket.socket:
        # What embedded_aws._listen raises when the bind is refused (tests run as root here: no real EACCES).
        denied = OSError(errno.EACCES, "Permission denied")
        raise OSError(errno.EACCES, f"the embedded AWS cannot listen on {host}:{port}: denied") from denied

    monkeypatch.setattr(embedded_aws, "_listen", refused)
    with pytest.raises(StackError) as refusal:
        LocalStack(port=0, aws_port=1, fakes=False).start()
    assert str(refusal.value).startswith("not allowed to listen on 127.0.0.1:1 for the embedded AWS")


def test_any_other_start_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: LocalStack) -> LocalStack:
        raise RuntimeError("the emulator said no\nand a second line")

    monkeypatch.setattr(LocalStack, "start", broken)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # main() must not keep the test's handlers
    code = devstack_main(["--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == "devstack: the stack could not start: RuntimeError: the emulator said no\n"
