"""The Lambda bundle: what goes in, that every handler imports from it alone, and that the Lambda build carries
aarch64 wheels.

An aarch64 orjson cannot import on an x86_64 host, so the import test builds the same bundle for this host's
platform and Python; the arm64 bundle is checked by reading its binaries' ELF headers. Both download wheels from
PyPI on the first run and reuse them from build/lambda/wheels/ afterwards.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infra import bundle
from infra.bundle import REPO_ROOT, BundleError, Target

ELF_MACHINE = {"aarch64": 183, "x86_64": 62}  # e_machine: EM_AARCH64, EM_X86_64

# On a fresh clone (or after any change to requirements.lock, which keys the wheel cache) the first test to
# use a bundle waits for pip to download two platforms' wheels from PyPI: 40-50 s each measured here under
# load, over 180 s (the suite's default timeout) once in a run of every module alone on a busy machine.
pytestmark = pytest.mark.timeout(600)


def existing_handler_modules() -> list[str]:
    return [
        m for m in bundle.handler_modules() if (REPO_ROOT / Path(*m.split("."))).with_suffix(".py").is_file()
    ]


def import_in_clean_interpreter(
    bundle_dir: Path, modules: list[str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Import `modules` with nothing on sys.path but the bundle and the standard library, from an empty folder
    (-I: no environment, user site or cwd; -S: no site-packages; -B: no .pyc written into the bundle), and
    print where each module came from."""
    script = textwrap.dedent(
        f"""
        import importlib, sys
        sys.path.insert(0, {str(bundle_dir)!r})
        for name in {modules!r}:
            module = importlib.import_module(name)
            assert callable(module.handler), name
            print(name, module.__file__)
        import orjson, aws_lambda_powertools, boto3
        print("orjson", orjson.__file__)
        print("boto3", boto3.__version__, boto3.__file__)
        """
    )
    return subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "AWS_REGION": "eu-west-2"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def host_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle.build_bundle(
        Target.host(), existing_handler_modules(), out=tmp_path_factory.mktemp("host") / "b"
    )


@pytest.fixture(scope="module")
def lambda_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = Target.lambda_runtime("python3.13", "arm64")
    return bundle.build_bundle(target, existing_handler_modules(), out=tmp_path_factory.mktemp("arm64") / "b")


def test_the_contents_are_what_the_handlers_import_pinned_by_the_lock() -> None:
    found = bundle.contents(existing_handler_modules())
    assert {"handlers", "eventlog", "domain"} <= set(found.packages)
    assert not {"devstack", "infra", "tests", "benchmarks"} & set(found.packages)
    pins = bundle.pins(REPO_ROOT / "requirements.lock")
    for name in ("orjson", "aws-lambda-powertools", "boto3", "botocore"):
        assert pins[name] in found.requirements
    # Type-only imports (boto3 stubs) stay out.
    assert not any(r.startswith("mypy") for r in found.requirements)


@pytest.fixture(scope="module")
def imported(host_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """module -> the file it was imported from, in a clean interpreter that sees only the bundle."""
    assert not list(host_bundle.rglob("*.pyc"))
    result = import_in_clean_interpreter(
        host_bundle, existing_handler_modules(), tmp_path_factory.mktemp("cwd")
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines())


@pytest.mark.parametrize("module", bundle.handler_modules())
def test_every_handler_imports_from_the_bundle_in_a_clean_interpreter(
    module: str, host_bundle: Path, imported: dict[str, str]
) -> None:
    if module not in existing_handler_modules():
        pytest.skip(f"{module} is not written yet")
    assert imported[module].startswith(str(host_bundle))


def test_third_party_packages_come_from_the_bundle_at_the_locked_versions(
    host_bundle: Path, imported: dict[str, str]
) -> None:
    assert imported["orjson"].startswith(str(host_bundle))
    # The locked SDK, not whatever the Lambda runtime carries.
    assert imported["boto3"].startswith(f"1.40.61 {host_bundle}")
    assert not (host_bundle / "bin").exists()


def test_the_import_check_fails_when_a_dependency_is_missing(host_bundle: Path, tmp_path: Path) -> None:
    # Given a copy of the bundle without orjson
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(host_bundle, broken, ignore=shutil.ignore_patterns("orjson*"))
    result = import_in_clean_interpreter(broken, existing_handler_modules(), tmp_path)
    assert result.returncode != 0
    assert "No module named 'orjson'" in result.stderr


def test_the_lambda_bundle_carries_aarch64_binaries_for_its_python(lambda_bundle: Path) -> None:
    binaries = list(lambda_bundle.rglob("*.so"))
    assert binaries, "orjson ships a compiled extension; none found"
    for path in binaries:
        header = path.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", path
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE["aarch64"], path
    assert any("cpython-313-aarch64-linux-gnu" in p.name for p in binaries)
    wheel_tags = (lambda_bundle / "orjson-3.13.0.dist-info" / "WHEEL").read_text()
    assert "aarch64" in wheel_tags
    assert "x86_64" not in wheel_tags
    assert (lambda_bundle / "handlers" / "load.py").is_file()


def test_bundles_are_reproducible_byte_for_byte(lambda_bundle: Path, tmp_path: Path) -> None:
    again = bundle.build_bundle(
        Target.lambda_runtime("python3.13"), existing_handler_modules(), out=tmp_path / "b"
    )

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first, second = files(lambda_bundle), files(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    # No absolute build paths leak into it (they would differ between machines).
    assert not any(
        str(tmp_path).encode() in data or str(lambda_bundle).encode() in data for data in second.values()
    )


# -- the scan, on a small repo of its own ---------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_scan_follows_local_packages_and_skips_type_only_imports(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "handlers/__init__.py": "",
            "handlers/api.py": """
                from __future__ import annotations
                import json
                from typing import TYPE_CHECKING
                from . import util
                import core.codec
                if TYPE_CHECKING:
                    import mypy_boto3_dynamodb
                else:
                    import orjson
                def handler(event, context):
                    import yaml  # a lazy import counts too
                """,
            "handlers/util.py": "",
            "core/__init__.py": "",
            "core/codec.py": "from boto3 import client\n",
            "unused/__init__.py": "import rich\n",
        },
    )
    packages, third_party = bundle.scan(["handlers.api"], tmp_path)
    assert packages == {"handlers", "core"}
    assert third_party == {"orjson", "yaml", "boto3"}


def test_a_missing_handler_module_or_pin_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path, {"handlers/__init__.py": "", "handlers/a.py": "import yaml\n"})
    with pytest.raises(BundleError, match=r"handlers\.nope has no file"):
        bundle.scan(["handlers.nope"], tmp_path)
    (tmp_path / "requirements.lock").write_text("orjson==3.13.0\nboto3==1.40.61\n")
    with pytest.raises(BundleError, match="pins no version of aws-lambda-powertools, pyyaml"):
        bundle.contents(["handlers.a"], tmp_path)


def test_targets_name_the_right_platforms() -> None:
    arm = Target.lambda_runtime("python3.13", "arm64")
    assert (arm.arch, arm.python_version) == ("aarch64", "3.13")
    assert arm.platforms[0] == "manylinux_2_34_aarch64"
    assert arm.platforms[-1] == "manylinux2014_aarch64"
    assert "manylinux_2_17_aarch64" in arm.platforms
    assert Target.lambda_runtime("python3.12", "x86_64").platforms[-1] == "manylinux2014_x86_64"
    with pytest.raises(BundleError):
        Target.lambda_runtime("nodejs20.x")


def test_the_cli_reports_a_user_error_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bundle.main(["--runtime", "ruby3.3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1


def test_the_wheel_cache_is_filled_once_and_never_half_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("orjson==3.13.0\n")
    cache = tmp_path / "wheels"
    target = Target.lambda_runtime("python3.13")
    calls: list[list[str]] = []

    def fake_pip(args: list[str], what: str) -> None:
        calls.append(list(args))
        dest = Path(args[args.index("--dest") + 1])
        (dest / "orjson-3.13.0-cp313-cp313-manylinux_2_17_aarch64.whl").write_bytes(b"wheel")

    monkeypatch.setattr(bundle, "_pip", fake_pip)
    # A download that died half-way left a staging folder behind; it is not mistaken for the cache.
    (cache / ".aarch64-py3.13-glibc2.34-dead").mkdir(parents=True)
    first = bundle.download_wheels(target, ["orjson==3.13.0"], lock, cache)
    second = bundle.download_wheels(target, ["orjson==3.13.0"], lock, cache)
    assert first == second
    assert len(calls) == 1
    assert (first / "wanted.txt").read_text() == "orjson==3.13.0\n"
    # Other pins (or another lock) get a folder of their own.
    lock.write_text("orjson==3.13.0\nurllib3==2.8.0\n")
    assert bundle.download_wheels(target, ["orjson==3.13.0"], lock, cache) != first
    assert len(calls) == 2

    # Another build finishing the same folder first is fine: its result is used.
    wanted = "aws-lambda-powertools==3.37.0\n"
    twin = cache / f"{target.key}-{hashlib.sha256(wanted.encode() + lock.read_bytes()).hexdigest()[:12]}"

    def racing_pip(args: list[str], what: str) -> None:
        fake_pip(args, what)
        twin.mkdir()
        (twin / "wanted.txt").write_text(wanted)

    monkeypatch.setattr(bundle, "_pip", racing_pip)
    assert bundle.download_wheels(target, ["aws-lambda-powertools==3.37.0"], lock, cache) == twin
    assert not [
        p for p in cache.iterdir() if p.name.startswith(".") and p.name != ".aarch64-py3.13-glibc2.34-dead"
    ]
