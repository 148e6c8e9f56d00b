"""The Lambda bundle: the repo's handler code and the third-party packages it imports, built for one platform.

What goes in is found, not listed: starting from the handler modules named in eventlog.topology, every local
package they import (eventlog/, domain/, ...) is copied whole, and every third-party module imported anywhere
in those packages (outside `if TYPE_CHECKING:`) is mapped to its distribution, pinned to its version in
requirements.lock, and installed from manylinux wheels for the target platform that pip downloads from PyPI.
orjson, aws-lambda-powertools and boto3 are always in: the Lambda runtime's own boto3 changes under the
function whenever AWS updates it, and the handlers were tested with the locked one.

Wheels are cached under build/lambda/wheels/<target>-<hash of the pins>/, so a second `pulumi up` needs no
network. `python -m infra.bundle --help` builds one by hand.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.utils import canonicalize_name

from eventlog.topology import FUNCTIONS

REPO_ROOT = Path(__file__).resolve().parent.parent
ALWAYS_BUNDLED = ("orjson", "aws-lambda-powertools", "boto3")
# Lambda's limit for a function's unzipped code (the zip itself may be at most 50 MB when uploaded directly).
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
Arch = Literal["aarch64", "x86_64"]


class BundleError(RuntimeError):
    """The bundle cannot be built (a missing pin, a wheel PyPI does not have for the platform, ...)."""


@dataclass(frozen=True)
class Target:
    """Where the bundle runs: CPU architecture, Python version and the newest glibc there."""

    arch: Arch
    python_version: str  # "3.13"
    glibc: tuple[int, int] = (2, 34)  # Amazon Linux 2023, under Lambda's python3.12 and later runtimes

    @classmethod
    def lambda_runtime(cls, runtime: str, architecture: Literal["arm64", "x86_64"] = "arm64") -> Target:
        """The target for a Lambda runtime (`python3.13`) and architecture (`arm64`)."""
        match = re.fullmatch(r"python(3\.\d+)", runtime)
        if not match:
            raise BundleError(f"{runtime!r} is not a Lambda Python runtime")
        return cls("aarch64" if architecture == "arm64" else "x86_64", match.group(1))

    @classmethod
    def host(cls) -> Target:
        """This machine (Linux only): for building a bundle that this interpreter can import."""
        machine = platform.machine()
        libc, version = platform.libc_ver()
        if sys.platform != "linux" or libc != "glibc" or machine not in ("aarch64", "x86_64"):
            raise BundleError(f"no manylinux target for this host ({sys.platform} {machine} {libc})")
        major, minor = (int(p) for p in version.split(".")[:2])
        return cls(machine, f"{sys.version_info.major}.{sys.version_info.minor}", (major, minor))  # type: ignore[arg-type]

    @property
    def platforms(self) -> list[str]:
        """pip `--platform` tags, newest first: every manylinux_2_N this glibc runs, down to manylinux2014."""
        tags = [f"manylinux_{self.glibc[0]}_{minor}_{self.arch}" for minor in range(self.glibc[1], 16, -1)]
        return [*tags, f"manylinux2014_{self.arch}"]

    @property
    def key(self) -> str:
        return f"{self.arch}-py{self.python_version}-glibc{self.glibc[0]}.{self.glibc[1]}"


@dataclass(frozen=True)
class Contents:
    """What a bundle holds: local packages (copied from the repo) and pinned third-party requirements."""

    packages: tuple[str, ...]
    requirements: tuple[str, ...]


def handler_modules() -> list[str]:
    """The modules the topology's functions name as handlers (`handlers.load`, ...)."""
    return sorted({spec.module for spec in FUNCTIONS})


def _local_packages(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}


def _imports(path: Path, package: str) -> set[str]:
    """Top-level names of the modules a file imports at run time (relative imports resolve to `package`)."""
    collector = _ImportCollector(package)
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    collector.found.discard("")
    return collector.found


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, package: str) -> None:
        self.package = package
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # the body exists only for the type checker
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name.split(".")[0] for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.add(self.package if node.level else (node.module or "").split(".")[0])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def scan(modules: Sequence[str], root: Path = REPO_ROOT) -> tuple[set[str], set[str]]:
    """(local packages, third-party top-level modules) reachable from `modules`, a whole package at a time."""
    local = _local_packages(root)
    packages: set[str] = set()
    third_party: set[str] = set()
    todo = []
    for module in modules:
        top = module.split(".")[0]
        path = root / Path(*module.split("."))
        if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
            raise BundleError(f"handler module {module} has no file under {root}")
        todo.append(top)
    while todo:
        package = todo.pop()
        if package in packages:
            continue
        packages.add(package)
        for path in sorted((root / package).rglob("*.py")):
            for name in _imports(path, package):
                if name in local:
                    todo.append(name)
                elif name not in sys.stdlib_module_names and name != "__future__":
                    third_party.add(name)
    return packages, third_party


def pins(lock: Path) -> dict[str, str]:
    """requirements.lock as {canonical name: `name==version`}."""
    out: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name = line.split("==", 1)[0].split("[", 1)[0].strip()
            out[canonicalize_name(name)] = line
    return out


def contents(modules: Sequence[str] | None = None, root: Path = REPO_ROOT) -> Contents:
    """What the bundle for `modules` (default: every handler in the topology) must hold."""
    packages, third_party = scan(handler_modules() if modules is None else modules, root)
    distributions = importlib.metadata.packages_distributions()
    names = {canonicalize_name(n) for n in ALWAYS_BUNDLED}
    for module in sorted(third_party):
        if module not in distributions:
            raise BundleError(f"the handlers import {module!r}, which no installed distribution provides")
        names.update(canonicalize_name(d) for d in distributions[module])
    pinned = pins(root / "requirements.lock")
    missing = sorted(n for n in names if n not in pinned)
    if missing:
        raise BundleError(f"requirements.lock pins no version of {', '.join(missing)} (the handlers need it)")
    return Contents(tuple(sorted(packages)), tuple(pinned[n] for n in sorted(names)))


def _pip(args: Sequence[str], what: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        raise BundleError(f"{what} failed: {' / '.join(detail)}")


def _platform_args(target: Target) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", target.python_version]
    for tag in target.platforms:
        args += ["--platform", tag]
    return args


def download_wheels(target: Target, requirements: Sequence[str], lock: Path, cache: Path) -> Path:
    """The wheels for `requirements` (and their dependencies, pinned by `lock`) for `target`, downloaded once.

    The cache folder is named by what it holds (target, requirements, lock) and never changed once complete:
    a download goes to a temporary folder renamed into place, so two builds at once (two test runs, a test
    run and `pulumi up`) never see each other's half-done work."""
    wanted = "\n".join(requirements) + "\n"
    digest = hashlib.sha256(wanted.encode() + lock.read_bytes()).hexdigest()[:12]
    folder = cache / f"{target.key}-{digest}"
    if (folder / "wanted.txt").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.key}-", dir=cache))
    try:
        (staging / "requested.txt").write_text(wanted, encoding="utf-8")
        _pip(
            [
                "download",
                "--dest",
                str(staging),
                *_platform_args(target),
                "-c",
                str(lock),
                "-r",
                str(staging / "requested.txt"),
            ],
            f"downloading wheels for {target.key}",
        )
        (staging / "wanted.txt").write_text(wanted, encoding="utf-8")  # last: marks the folder complete
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "wanted.txt").is_file():  # not a finished twin: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def build_bundle(
    target: Target,
    modules: Sequence[str] | None = None,
    root: Path = REPO_ROOT,
    out: Path | None = None,
) -> Path:
    """Build the bundle for `target` into `out` (default build/lambda/bundle-<target>/) and return it.

    The folder is replaced whole, and its bytes depend only on the code and the pins (no .pyc, no absolute
    paths), so Pulumi sees a change only when there is one."""
    found = contents(modules, root)
    lock = root / "requirements.lock"
    build = root / "build" / "lambda"
    wheels = download_wheels(target, found.requirements, lock, build / "wheels")
    out = out or build / f"bundle-{target.key}"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    try:
        _pip(
            [
                "install",
                "--no-index",
                "--find-links",
                str(wheels),
                "--target",
                str(staging),
                "--no-compile",
                *_platform_args(target),
                "-c",
                str(lock),
                "-r",
                str(wheels / "wanted.txt"),
            ],
            f"installing wheels for {target.key}",
        )
        shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts for the build host's Python
        for package in found.packages:
            shutil.copytree(
                root / package, staging / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        if size > MAX_UNZIPPED_BYTES:
            raise BundleError(f"the bundle is {size / 2**20:.0f} MiB unzipped; Lambda allows 250 MiB")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m infra.bundle`: build a bundle and print where it is and what it holds."""
    parser = argparse.ArgumentParser(prog="python -m infra.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="python3.13", help="Lambda runtime (default python3.13)")
    parser.add_argument("--architecture", choices=("arm64", "x86_64"), default="arm64")
    parser.add_argument("--host", action="store_true", help="build for this machine instead (to import it)")
    parser.add_argument("--out", type=Path, help="the folder to build into (replaced)")
    ns = parser.parse_args(argv)
    try:
        target = Target.host() if ns.host else Target.lambda_runtime(ns.runtime, ns.architecture)
        path = build_bundle(target, out=ns.out)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"{path}  ({target.key}, {size / 2**20:.1f} MiB unzipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
