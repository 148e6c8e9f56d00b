"""The Pulumi tests need no AWS and no emulator. pulumi_aws warns about its own deprecated modules when they
are imported; that is noise here, not a finding about this program."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(r"ignore::DeprecationWarning:pulumi_aws\."))
