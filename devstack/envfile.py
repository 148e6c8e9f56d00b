"""The running stack's environment as a file: `python -m devstack` writes it, `python -m devstack demo` reads it.

The file holds the same `export NAME=value` lines the banner prints (`.devstack/env` by default, gitignored), so
a demo (or a shell: `source .devstack/env`) reaches the embedded AWS as well as the API: the demo's sections run
the replayer in-process and read tables directly. The stack removes the file when it stops, unless another
stack has written its own there meanwhile.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path

DEFAULT_ENV_FILE = Path(".devstack") / "env"


class EnvFileError(Exception):
    """The env file cannot be read or written (the message is one line)."""


def write_env_file(path: Path, lines: Iterable[str]) -> str:
    """Write the export lines to `path` (its folder created, readable by the owner only, swapped in by a rename
    so a reader never sees half a file). Returns the text written, for `remove_env_file`."""
    text = "# written by python -m devstack; removed when it stops\n" + "".join(f"{line}\n" for line in lines)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        partial.replace(path)
    except OSError as exc:
        raise EnvFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return text


def remove_env_file(path: Path, written: str) -> None:
    """Remove the file if it still holds what this process wrote (a second stack may have replaced it)."""
    try:
        if path.read_text() == written:
            path.unlink()
    except OSError:
        pass  # already gone, or never written: nothing of ours to clean up


def read_env_file(path: Path) -> dict[str, str]:
    """The variables the file exports ({} when there is no file). Lines other than `export NAME=value` (the
    comment, the `unset` line) are skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise EnvFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("export "):
            continue
        try:
            words = shlex.split(line[len("export ") :])
        except ValueError as exc:
            raise EnvFileError(f"{path}:{number}: {exc}") from exc
        for word in words:
            name, sep, value = word.partition("=")
            if not sep or not name.isidentifier():
                raise EnvFileError(f"{path}:{number}: not NAME=value: {word!r}")
            values[name] = value
    return values
