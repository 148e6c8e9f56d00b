"""The demo's domain part against an in-process stack: it shows what it says, and says so when it does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import handlers.write
from devstack.demo import Demo, DemoError
from devstack.demo_domain import fix_replay, section
from domain import Ledger
from domain.ledger import RULES_2026_1
from eventlog.settings import Settings
from tests.devstack.support import run_demo_section


def run_section(settings: Settings, timeout: float, part: Callable[[Demo], None] = section) -> str:
    return run_demo_section(settings, timeout, part)


def test_the_domain_section_runs_against_an_in_process_stack(settings: Settings) -> None:
    text = run_section(settings, timeout=20.0)
    assert "Balance 100.00." in text
    assert "owner 'Dana'" in text
    assert "Reversing twice: recorded, and refused: version 3 is already reversed (by version 4)" in text
    assert "The refusal became an application; Erin's balance is 0.00." in text
    assert "close_reason 'not recorded (closed before reasons were required)'" in text
    assert "v2 AccountClosed schema_version 1 payload {}" in text
    assert "5,000.00 on 30 June: applied; the same on 1 July: refused" in text


def test_the_section_fails_when_the_fix_never_reaches_the_write_function(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write function keeps the previous release's rules whatever is deployed.
    monkeypatch.setattr(handlers.write, "domain", lambda: Ledger(RULES_2026_1))
    with pytest.raises(DemoError, match=r"expected the withdrawal applied and a balance of 0\.00"):
        run_section(settings, timeout=3.0, part=lambda demo: fix_replay(demo, "erin-stuck"))
