"""The two locks: requirements-run.lock (what `make run`, `make demo`, `make bench` install) and requirements.lock
(everything: `make setup`, `make test`, CI, `pulumi up`).

The Makefile stamps both locks installed when it installs the full one, which is only right if the run lock is
a part of the full lock with the same versions; and `make run` only works if the run lock holds every package
the local stack and the operator commands import, with everything those need.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUN_LOCK = ROOT / "requirements-run.lock"
FULL_LOCK = ROOT / "requirements.lock"
# What `make run`, `make demo`, `make bench`, `python -m replayer` and `python -m ops` import.
RUN_PACKAGES = ("eventlog", "domain", "handlers", "gateways", "replayer", "ops", "devstack", "benchmarks")
LOCAL = {*RUN_PACKAGES, "infra", "tests", "api"}
# Imported by a library rather than by our code, but only when a run command needs it: moto's server (the
# embedded AWS) imports flask and flask_cors, which moto[dynamodb,kinesis] does not require.
INDIRECT = {"flask", "flask_cors"}


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{path.name}: {line} is not pinned exactly"
        found[canonicalize_name(requirement.name)] = spec.version
    return found


def test_the_run_lock_is_part_of_the_full_lock_with_the_same_versions() -> None:
    run, full = pins(RUN_LOCK), pins(FULL_LOCK)
    differ = {name: (version, full.get(name)) for name, version in run.items() if full.get(name) != version}
    assert not differ, f"requirements-run.lock vs requirements.lock: {differ}"
    assert len(run) < len(full)


def test_each_in_file_is_pinned_in_its_lock_and_the_full_set_includes_the_run_set() -> None:
    assert "-r requirements-run.in" in (ROOT / "requirements.in").read_text().splitlines()
    for source, lock in (("requirements-run.in", RUN_LOCK), ("requirements.in", FULL_LOCK)):
        locked = pins(lock)
        for name, version in pins(ROOT / source).items():
            assert locked.get(name) == version, (
                f"{source} pins {name}=={version}; {lock.name}: {locked.get(name)}"
            )


def test_the_run_lock_holds_everything_its_packages_need() -> None:
    run = pins(RUN_LOCK)
    extras = {"moto": {"dynamodb", "kinesis"}, "aiobotocore": {"boto3"}}
    environment = {"python_version": f"{sys.version_info.major}.{sys.version_info.minor}"}
    missing = []
    for name in run:
        for text in importlib.metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            wanted = {"", *extras.get(name, set())}
            if requirement.marker and not any(
                requirement.marker.evaluate({**environment, "extra": extra}) for extra in wanted
            ):
                continue
            if canonicalize_name(requirement.name) not in run:
                missing.append(f"{name} needs {requirement.name}")
    assert not missing, missing


def _imports(path: Path) -> set[str]:
    """Top-level modules a file imports at run time (not those under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for statement in branch.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_the_run_lock_has_every_package_the_local_stack_and_the_commands_import() -> None:
    run = pins(RUN_LOCK)
    distributions = importlib.metadata.packages_distributions()
    imported = set().union(*(_imports(p) for package in RUN_PACKAGES for p in (ROOT / package).glob("*.py")))
    third_party = (imported - LOCAL - set(sys.stdlib_module_names) - {"__future__"}) | INDIRECT
    assert {"aioboto3", "moto", "orjson", "aws_lambda_powertools"} <= third_party
    missing = {
        module: distributions.get(module)
        for module in third_party
        if not any(canonicalize_name(d) in run for d in distributions.get(module, []))
    }
    assert not missing, f"imported by the run packages, not in requirements-run.lock: {missing}"
