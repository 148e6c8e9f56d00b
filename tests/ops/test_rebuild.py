"""Rebuild into a shadow table, compare, swap, drop: against the embedded AWS, the live history made by the
real load, pump and write handlers, and the playback stream delivered to the write function while the rebuild
waits (its `tick`)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from eventlog.settings import Settings
from ops import tables
from ops.errors import OpsError
from ops.rebuild import Rebuilds, SwapResult
from ops.replay import NotCaughtUp, Pace
from tests.ops.support import Playback, live_history

HISTORY = [
    ("alice", "AccountOpened", {"owner": "Alice"}),
    ("alice", "MoneyDeposited", {"amount": 10000}),
    ("bob", "AccountOpened", {"owner": "Bob"}),
    ("alice", "MoneyWithdrawn", {"amount": 2500}),
    ("bob", "MoneyWithdrawn", {"amount": 5000}),  # refused: overdraft
    ("bob", "MoneyDeposited", {"amount": 700}),
    ("carol", "AccountOpened", {"owner": "Carol"}),
]


def rebuilds(settings: Settings, playback: Playback, **kwargs: Any) -> Rebuilds:
    kwargs.setdefault("wait_timeout_s", 10.0)
    kwargs.setdefault("poll_interval_s", 0.01)
    return Rebuilds(settings, tick=playback, **kwargs)


def state(dynamodb: Any, table: str, aggregate_id: str) -> dict[str, Any] | None:
    item = dynamodb.get_item(TableName=table, Key={"aggregate_id": {"S": aggregate_id}}).get("Item")
    return orjson.loads(item["state"]["S"]) if item else None


def set_balance(dynamodb: Any, table: str, aggregate_id: str, balance: int) -> None:
    """Corrupt a live state item (its version kept), as a bug in earlier projection code would have."""
    item = dynamodb.get_item(TableName=table, Key={"aggregate_id": {"S": aggregate_id}})["Item"]
    body = orjson.loads(item["state"]["S"])
    body["balance"] = balance
    item["state"] = {"S": orjson.dumps(body).decode()}
    dynamodb.put_item(TableName=table, Item=item)


@pytest.fixture
def history(settings: Settings) -> None:
    live_history(settings, HISTORY)


def test_a_rebuild_of_an_untouched_history_equals_the_live_state(
    settings: Settings, dynamodb: Any, history: None
) -> None:
    playback = Playback(settings)
    comparison = rebuilds(settings, playback).rebuild("rebuild-same")
    assert comparison.diff.equal, comparison.diff.to_dict()
    assert comparison.diff.same == 3
    assert playback.delivered == len(HISTORY)
    shadow = "es-test-state-rebuild-same"
    assert state(dynamodb, shadow, "alice") == state(dynamodb, settings.state_table, "alice")
    record = rebuilds(settings, playback).store.get("rebuild-same")
    assert record is not None
    assert (record.status, record.shadow_table, record.diff["same"]) == ("ready", shadow, 3)
    # The shadow is made like the live table, and tagged with the live table it rebuilds.
    described = tables.describe(dynamodb, shadow)
    assert described is not None
    assert described["KeySchema"] == [{"AttributeName": "aggregate_id", "KeyType": "HASH"}]
    tags = dynamodb.list_tags_of_resource(ResourceArn=described["TableArn"])["Tags"]
    assert {"Key": tables.REBUILD_TAG, "Value": settings.state_table} in tags


def test_the_diff_names_what_differs_is_missing_and_is_extra_and_swap_repairs_it(
    settings: Settings, dynamodb: Any, history: None
) -> None:
    live = settings.state_table
    # given a live table that drifted from the log: a wrong balance, a lost item, an item no event explains
    set_balance(dynamodb, live, "alice", 9999)
    dynamodb.delete_item(TableName=live, Key={"aggregate_id": {"S": "carol"}})
    orphan = {
        "aggregate_id": {"S": "ghost"},
        "version": {"N": "1"},
        "state": {"S": '{"balance":1}'},
        "updated_at": {"S": "2026-01-01T00:00:00.000000Z"},
        "last_event_id": {"S": "none"},
    }
    dynamodb.put_item(TableName=live, Item=orphan)
    playback = Playback(settings)
    ops = rebuilds(settings, playback)

    diff = ops.rebuild("rebuild-drift").diff

    assert [(d.aggregate_id, [(f.name, f.live, f.shadow) for f in d.fields]) for d in diff.differ] == [
        ("alice", [("state.balance", 9999, 7500)])
    ]
    assert (diff.missing, diff.extra, diff.behind, diff.same) == (["ghost"], ["carol"], [], 1)

    # when swapped: the differing item is repaired; the lost one and the orphan only on request
    result = ops.swap("rebuild-drift")
    assert result.written == ["alice"]
    assert result.not_swapped == {"live_lacks": ["carol"], "only_live": ["ghost"]}
    assert state(dynamodb, live, "alice")["balance"] == 7500  # type: ignore[index]
    assert state(dynamodb, live, "carol") is None
    assert result.complete
    assert result.shadow_deleted
    assert tables.describe(dynamodb, "es-test-state-rebuild-drift") is None
    assert ops.store.get("rebuild-drift").status == "swapped"  # type: ignore[union-attr]


def test_swap_can_also_write_what_live_lacks_and_delete_what_no_event_explains(
    settings: Settings, dynamodb: Any, history: None
) -> None:
    live = settings.state_table
    dynamodb.delete_item(TableName=live, Key={"aggregate_id": {"S": "carol"}})
    ops = rebuilds(settings, Playback(settings))
    ops.rebuild("rebuild-all")
    dynamodb.put_item(
        TableName=live,
        Item={
            "aggregate_id": {"S": "ghost"},
            "version": {"N": "1"},
            "state": {"S": "null"},
            "updated_at": {"S": "x"},
            "last_event_id": {"S": "none"},
        },
    )
    result = ops.swap("rebuild-all", include_behind=True, delete_missing=True, keep_shadow=True)
    assert (result.written, result.deleted, result.not_swapped) == (["carol"], ["ghost"], {})
    assert state(dynamodb, live, "carol")["owner"] == "Carol"  # type: ignore[index]
    assert state(dynamodb, live, "ghost") is None
    assert not result.shadow_deleted
    assert tables.describe(dynamodb, "es-test-state-rebuild-all") is not None


def test_live_events_during_the_rebuild_are_caught_up_not_reported_as_differences(
    settings: Settings, dynamodb: Any, history: None
) -> None:
    playback = Playback(settings)
    moved = False

    def tick() -> None:
        nonlocal moved
        if not moved:  # the first look: the replay has read everything; then alice and a new account move on
            moved = True
            live_history(
                settings,
                [("alice", "MoneyDeposited", {"amount": 1}), ("dave", "AccountOpened", {"owner": "D"})],
            )
        playback()

    ops = Rebuilds(settings, tick=tick, wait_timeout_s=10.0, poll_interval_s=0.01)
    comparison = ops.rebuild("rebuild-busy")
    assert comparison.diff.equal, comparison.diff.to_dict()
    assert comparison.diff.same == 4
    record = ops.store.get("rebuild-busy")
    assert record is not None
    assert record.catchups == 1
    assert state(dynamodb, record.shadow_table, "alice")["balance"] == 7501  # type: ignore[index]


def test_a_live_write_between_compare_and_swap_is_not_overwritten(
    settings: Settings, dynamodb: Any, history: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = settings.state_table
    set_balance(dynamodb, live, "alice", 9999)
    playback = Playback(settings)
    ops = rebuilds(settings, playback)
    ops.rebuild("rebuild-race")
    # given a deposit projected into the live table just before the swap writes alice
    original = Rebuilds._conditional
    raced = False

    def racing(self: Rebuilds, action: str, table: str, aggregate_id: str, *rest: Any) -> bool:
        nonlocal raced
        if aggregate_id == "alice" and not raced:
            raced = True
            live_history(settings, [("alice", "MoneyDeposited", {"amount": 5})])
        return original(self, action, table, aggregate_id, *rest)

    monkeypatch.setattr(Rebuilds, "_conditional", racing)
    result: SwapResult = ops.swap("rebuild-race")
    # then the swap's first write failed its condition, the shadow caught up with v5, and the second write
    # put the rebuilt state, deposit included (the live write function had added it to the wrong balance)
    assert raced
    assert result.complete
    assert result.written == ["alice"]
    item = state(dynamodb, live, "alice")
    assert item is not None
    assert item["balance"] == 7505
    assert ops.store.get("rebuild-race").catchups == 1  # type: ignore[union-attr]


def test_a_shadow_that_never_catches_up_is_a_clear_error(
    settings: Settings, dynamodb: Any, history: None
) -> None:
    ops = Rebuilds(settings, tick=None, wait_timeout_s=0.3, poll_interval_s=0.05)  # nothing projects
    with pytest.raises(NotCaughtUp, match="has not caught up after 0s: 3 aggregate") as info:
        ops.rebuild("rebuild-stuck")
    assert str(info.value).endswith("; then `python -m ops rebuild --resume rebuild-stuck` compares")
    with pytest.raises(OpsError, match="is replaying, not ready to swap"):
        ops.swap("rebuild-stuck")
    with pytest.raises(
        OpsError, match="its replay has not finished; `python -m ops rebuild --resume rebuild-stuck`"
    ):
        ops.compare("rebuild-stuck")
    # Its events are still on the playback stream: dropping its shadow now needs --force.
    with pytest.raises(OpsError, match="events it put may still be on the playback stream"):
        ops.drop("rebuild-stuck")
    assert ops.drop("rebuild-stuck", force=True).status == "dropped"


def test_a_subset_rebuild_compares_only_its_aggregates(
    settings: Settings, dynamodb: Any, history: None
) -> None:
    set_balance(dynamodb, settings.state_table, "bob", 1)
    playback = Playback(settings)
    ops = rebuilds(settings, playback)
    diff = ops.rebuild("rebuild-alice", ["alice"]).diff
    assert (diff.same, diff.compared) == (1, 1)  # bob's drift is not its business
    assert playback.delivered == 3
    assert ops.compare("rebuild-alice").diff.compared == 1


def test_drop_deletes_the_shadow_and_a_dropped_rebuild_cannot_be_swapped(
    settings: Settings, dynamodb: Any, history: None
) -> None:
    ops = rebuilds(settings, Playback(settings))
    ops.rebuild("rebuild-drop")
    assert ops.drop("rebuild-drop").status == "dropped"
    assert tables.describe(dynamodb, "es-test-state-rebuild-drop") is None
    with pytest.raises(OpsError, match="is dropped, not ready to swap"):
        ops.swap("rebuild-drop")
    with pytest.raises(OpsError, match="no rebuild rebuild-nope"):
        ops.swap("rebuild-nope")
    with pytest.raises(OpsError, match="rebuild rebuild-drop already exists"):
        ops.rebuild("rebuild-drop")
    assert [r.rebuild_id for r in ops.records()] == ["rebuild-drop"]


def test_a_stopped_rebuild_resumes(
    settings: Settings, dynamodb: Any, history: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ops.rebuild as module
    from ops.errors import Stopped

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise Stopped("replay rebuild-later stopped before its end")

    ops = rebuilds(settings, Playback(settings))
    with monkeypatch.context() as patch:
        patch.setattr(module, "run_replay", stopped)
        with pytest.raises(
            Stopped, match="continue with `python -m ops rebuild --resume rebuild-later`"
        ) as info:
            ops.rebuild("rebuild-later")
    assert info.value.exit_code == 3
    assert ops.store.get("rebuild-later").status == "stopped"  # type: ignore[union-attr]
    assert ops.resume("rebuild-later").diff.equal
    assert ops.store.get("rebuild-later").status == "ready"  # type: ignore[union-attr]


def test_a_writer_that_read_the_live_item_before_the_swap_cannot_write_over_it(
    settings: Settings, dynamodb: Any, history: None
) -> None:
    live = settings.state_table
    set_balance(dynamodb, live, "alice", 9999)
    ops = rebuilds(settings, Playback(settings))
    ops.rebuild("rebuild-stale")
    # given a write function that read alice (v3, the wrong balance) just before the swap
    stale = dynamodb.get_item(TableName=live, Key={"aggregate_id": {"S": "alice"}})["Item"]
    assert ops.swap("rebuild-stale").written == ["alice"]
    swapped = dynamodb.get_item(TableName=live, Key={"aggregate_id": {"S": "alice"}})["Item"]
    assert orjson.loads(swapped["replays"]["S"]) == ["rebuild-stale"]
    # when it writes v4 on the condition every state write carries (the version and the replay marks it read)
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(
            TableName=live,
            Item={**stale, "version": {"N": "4"}},
            ConditionExpression="version = :v AND attribute_not_exists(replays)",
            ExpressionAttributeValues={":v": stale["version"]},
        )
    # then it failed: it reads again and builds on the swapped state
    assert state(dynamodb, live, "alice")["balance"] == 7500  # type: ignore[index]


@pytest.mark.parametrize(("pace", "spread"), [(Pace(), True), (Pace(spread_shards=False), False)])
def test_a_rebuild_spreads_its_replay_over_the_shards_unless_told_not_to(
    settings: Settings, dynamodb: Any, history: None, pace: Pace, spread: bool
) -> None:
    # A rebuild's replay goes to its own shadow table: it may spread aggregates over the shards (--spread-shards)
    playback = Playback(settings)
    comparison = rebuilds(settings, playback, pace=pace).rebuild("rebuild-spread")
    assert comparison.diff.equal, comparison.diff.to_dict()
    item = dynamodb.get_item(
        TableName=settings.replay_checkpoints_table,
        Key={"replay_id": {"S": "rebuild-spread"}, "part": {"S": "replay"}},
    )["Item"]
    assert orjson.loads(item["definition"]["S"]).get("spread_shards", False) is spread
