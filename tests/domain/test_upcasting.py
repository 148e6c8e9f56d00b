"""Upcasting: an event recorded in an older schema is read in the current shape by every decision."""

from __future__ import annotations

from typing import Any

import pytest

from domain import DOMAIN, UnknownSchemaVersion
from domain.ledger import CLOSE_REASON_NOT_RECORDED, UPCASTERS
from domain.upcasting import Upcasters
from eventlog.envelope import Event

AT = "2026-03-01T00:00:00.000000Z"


def event(type_: str, schema: int, payload: dict[str, Any], version: int = 1) -> Event:
    return Event(f"e{version}", "acc-1", type_, version, schema, AT, AT, payload)


def test_every_type_has_a_complete_chain_from_version_1() -> None:
    assert UPCASTERS.missing() == []


def test_a_v1_account_closed_reads_as_v2_with_the_reason_not_recorded() -> None:
    old = event("AccountClosed", 1, {})
    current = DOMAIN.upcast(old)
    assert (current.schema_version, current.payload) == (2, {"reason": CLOSE_REASON_NOT_RECORDED})
    assert old.payload == {}  # the recorded event is not touched
    assert DOMAIN.upcast(current) is current  # already current: the same object


def test_apply_and_fold_decide_a_v1_event_in_the_current_shape() -> None:
    history = [
        event("AccountOpened", 1, {"owner": "Ada"}, 1),
        event("AccountClosed", 1, {}, 2),
    ]
    folded = DOMAIN.fold(history)
    assert folded[-1].state is not None
    assert folded[-1].state["close_reason"] == CLOSE_REASON_NOT_RECORDED
    applied = DOMAIN.apply(folded[0].state, history[1])
    assert applied.state == folded[-1].state


@pytest.mark.parametrize("schema", [0, 3, 99])
def test_a_schema_version_this_code_cannot_read_is_an_error_not_a_guess(schema: int) -> None:
    with pytest.raises(UnknownSchemaVersion, match=f"schema_version {schema}; this code reads 1 to 2"):
        DOMAIN.fold([event("AccountOpened", 1, {"owner": "Ada"}, 1), event("AccountClosed", schema, {}, 2)])


def test_a_chain_with_a_missing_step_says_which() -> None:
    upcasters = Upcasters({"Renamed": 3})

    @upcasters.register("Renamed", 1)
    def one_to_two(payload: dict[str, Any]) -> dict[str, Any]:
        return {"name": payload.pop("title")}

    assert upcasters.missing() == ["Renamed v2 -> v3"]
    with pytest.raises(UnknownSchemaVersion, match="no upcaster from schema_version 2"):
        upcasters.upcast(Event("e", "a", "Renamed", 1, 1, AT, AT, {"title": "x"}))


def test_steps_run_in_order_and_registering_a_wrong_step_is_refused() -> None:
    upcasters = Upcasters({"Moved": 3})

    @upcasters.register("Moved", 1)
    def one(payload: dict[str, Any]) -> dict[str, Any]:
        return {"cents": payload["euros"] * 100}

    @upcasters.register("Moved", 2)
    def two(payload: dict[str, Any]) -> dict[str, Any]:
        return {"amount": {"cents": payload["cents"], "currency": "EUR"}}

    read = upcasters.upcast(Event("e", "a", "Moved", 1, 1, AT, AT, {"euros": 3}))
    assert (read.schema_version, read.payload) == (3, {"amount": {"cents": 300, "currency": "EUR"}})
    with pytest.raises(ValueError, match="already registered"):
        upcasters.register("Moved", 1)(one)
    with pytest.raises(ValueError, match="no upcaster from version 3"):
        upcasters.register("Moved", 3)(one)
    with pytest.raises(ValueError, match="current is None"):
        upcasters.register("Unknown", 1)(one)
