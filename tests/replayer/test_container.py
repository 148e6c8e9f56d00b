"""The container (replayer/Dockerfile) cannot be built here; what can be checked is: the files it copies exist,
its user is not root, its entrypoint module runs with only the copied code, and its pins are the lock's and
cover every dependency."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "replayer" / "Dockerfile"
REQUIREMENTS = ROOT / "replayer" / "requirements.txt"
# The container's Python and platform, for the dependencies' environment markers.
CONTAINER_ENV = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
                 "platform_system": "Linux", "implementation_name": "cpython", "extra": ""}  # fmt: skip


def _instructions() -> list[tuple[str, str]]:
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(name.split("[")[0])] = version.strip()
    return pins


def test_dockerfile_uses_a_slim_python_a_non_root_user_and_the_module_entrypoint() -> None:
    instructions = _instructions()
    assert instructions[0][0] == "FROM"
    assert re.fullmatch(r"python:3\.1[1-9][\w.-]*-slim[\w.-]*", instructions[0][1])
    users = [rest for word, rest in instructions if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert [rest for word, rest in instructions if word == "ENTRYPOINT"] == ['["python", "-m", "replayer"]']
    # only the replayer's pinned requirements are installed
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "-r /app/replayer/requirements.txt" in runs
    assert "pip check" in runs


def test_every_file_the_dockerfile_copies_exists() -> None:
    copies = [rest.split()[:-1] for word, rest in _instructions() if word == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert list(ROOT.glob(source)), f"COPY {source}: nothing there"


def test_requirements_are_the_locks_pins_and_cover_every_dependency() -> None:
    pins = _pins(REQUIREMENTS)
    lock = _pins(ROOT / "requirements.lock")
    assert {"aioboto3", "aiobotocore", "orjson", "rich", "aiohttp", "boto3"} <= set(pins)
    for name, version in pins.items():
        assert lock.get(name) == version, (
            f"{name}=={version} differs from requirements.lock ({lock.get(name)})"
        )
    for name in pins:
        distribution = importlib.metadata.distribution(name)
        for text in distribution.requires or []:
            requirement = Requirement(text)
            wanted_extras = {"boto3"} if name == "aiobotocore" else set()
            if requirement.marker and not any(
                requirement.marker.evaluate({**CONTAINER_ENV, "extra": extra})
                for extra in {"", *wanted_extras}
            ):
                continue
            assert canonicalize_name(requirement.name) in pins, f"{name} needs {requirement.name}"


def test_the_entrypoint_runs_with_only_the_copied_code(tmp_path: Path) -> None:
    # given only what the image copies (eventlog/*.py, replayer/*.py) in an empty folder
    for folder in ("eventlog", "replayer"):
        (tmp_path / folder).mkdir()
        for source in (ROOT / folder).glob("*.py"):
            shutil.copy(source, tmp_path / folder / source.name)
    # when the entrypoint module runs, then it works and imports nothing outside the copy and the pins
    probe = (
        "import sys, runpy, importlib.metadata as m\n"
        "sys.argv = ['replayer', '--help']\n"
        "try:\n    runpy.run_module('replayer', run_name='__main__')\n"
        "except SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
        "import replayer.engine, replayer.cli, replayer.fargate\n"
        "names = m.packages_distributions()\n"
        "tops = {n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names)\n"
        "print(sorted({d for t in tops for d in names.get(t, [])}))\n"
        "print(sorted(t for t in tops if t not in names))\n"
        "import os, eventlog\n"
        "assert replayer.engine.__file__.startswith(os.getcwd()) and eventlog.__file__.startswith(os.getcwd())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "usage: python -m replayer" in done.stdout
    used = {canonicalize_name(n) for n in eval(lines[-2])}
    local = set(eval(lines[-1]))
    pins = _pins(REQUIREMENTS)
    # Imported here only because this venv has them: botocore takes certifi if present (else its own CA
    # bundle), and setuptools' .pth hook loads _distutils_hack at start-up.
    optional = {"certifi", "setuptools"}
    assert used - set(pins) - optional == set(), "imports from packages the container does not install"
    # (compiled extensions register private modules such as cython_runtime)
    assert {t for t in local if not t.startswith("_") and t != "cython_runtime"} == {"eventlog", "replayer"}


@pytest.mark.parametrize("argv", [["--help"]])
def test_python_m_replayer_runs(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "replayer", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "--aggregate" in done.stdout
