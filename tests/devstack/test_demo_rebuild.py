"""The demo's rebuild part against an in-process stack: it shows what it says, and says so when it does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devstack.demo import Demo, DemoError
from devstack.demo_rebuild import section
from eventlog.settings import Settings
from ops.rebuild import Rebuilds
from tests.devstack.support import run_demo_section


def run_section(settings: Settings, timeout: float, part: Callable[[Demo], None] = section) -> str:
    return run_demo_section(settings, timeout, part)


def test_the_rebuild_section_runs_against_an_in_process_stack(settings: Settings) -> None:
    text = run_section(settings, timeout=20.0)
    assert "state.balance: live 999999, rebuilt 3800" in text
    assert "Hana's balance is 38.00 again; the shadow table is gone." in text
    assert "v1..v3" in text
    assert "balance 38.00, as live." in text


def test_the_section_fails_when_a_swap_writes_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The swap's conditional writes all fail (as if the live items kept changing).
    monkeypatch.setattr(Rebuilds, "_conditional", lambda *args: False)
    with pytest.raises(DemoError, match="expected the swap to write Hana's item, got exit 1"):
        run_section(settings, timeout=20.0)
