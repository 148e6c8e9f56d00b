"""The demo's rebuild part (issue 4, items 2 and 7): rebuild state into a shadow table, read its diff against
the live state, swap it in; then a test environment made from a subset of the log.

Hana's live state is damaged on purpose (a balance no event explains, as a projection bug would leave it); a
rebuild of her and Ivan's accounts into a shadow table shows exactly that field, and the swap repairs it while
Ivan's item is left alone. Then a test environment under its own prefix gets Hana's history alone: its own log,
versions from 1, its own state, equal to the live one. The commands are the operator's (`python -m ops ...`),
run in this process against the stack's embedded AWS, and the stack's write function does the projecting.
"""

from __future__ import annotations

import io
import json
from typing import Any

from devstack.demo import Demo, DemoError, money
from eventlog.state import StateStore

TITLE = "Rebuild into a shadow table, diff, swap; a test environment from a subset of the log"


def section(demo: Demo) -> None:
    """Run the part (see the module docstring); raises DemoError when the stack does something else."""
    hana, ivan = f"hana-{demo.suffix}", f"ivan-{demo.suffix}"
    rebuild_id = f"rebuild-demo-{demo.suffix}"
    settings = demo.settings

    demo.step("1. Two accounts, live")
    demo.commit(hana, "AccountOpened", {"owner": "Hana"})
    demo.commit(hana, "MoneyDeposited", {"amount": 5000})
    demo.commit(hana, "MoneyWithdrawn", {"amount": 1200})
    demo.commit(ivan, "AccountOpened", {"owner": "Ivan"})
    demo.commit(ivan, "MoneyDeposited", {"amount": 300})

    demo.step("2. Damage Hana's live state (a balance no event explains, as a projection bug would leave)")
    states = StateStore(demo.dynamodb(), settings.state_table)
    record = states.get(hana)
    if record is None or record.state is None:
        raise DemoError(f"no live state for {hana}")
    damaged = {**record.state, "balance": 999999}
    # Written at the same version, as a faulty projection would have: only a rebuild can tell.
    demo.dynamodb().put_item(
        TableName=settings.state_table,
        Item={
            "aggregate_id": {"S": hana},
            "version": {"N": str(record.version)},
            "state": {"S": json.dumps(damaged)},
            "updated_at": {"S": record.updated_at},
            "last_event_id": {"S": record.last_event_id},
        },
    )
    shown = demo.state(hana)["state"]["balance"]
    demo.say(f"   GET says {money(shown)}; the log says 50.00 - 12.00 = {money(3800)}.")

    demo.step("3. Rebuild both accounts from the log into a shadow table, and compare")
    demo.say("   (without --aggregate it rebuilds every aggregate; here just this part's two)")
    code, report = ops(
        demo,
        "rebuild",
        "--id",
        rebuild_id,
        "--aggregate",
        hana,
        "--aggregate",
        ivan,
        "--exit-code",
        "--timeout",
        str(demo.timeout),
        "--progress",
        "none",
    )
    if code != 4 or f"{hana} (v3):" not in report or "state.balance: live 999999, rebuilt 3800" not in report:
        raise DemoError(f"expected the rebuild to find Hana's balance differing (exit 4), got exit {code}")
    if "1 same, 1 differ, 0 missing, 0 extra, 0 behind" not in report:
        raise DemoError("expected Ivan's account to be the same in the rebuild")

    demo.step("4. Swap the rebuilt state in (only on command), and read it back")
    code, report = ops(demo, "swap", rebuild_id)
    if code != 0 or f"written: {hana}" not in report:
        raise DemoError(f"expected the swap to write Hana's item, got exit {code}")
    balance = demo.state(hana)["state"]["balance"]
    if balance != 3800:
        raise DemoError(f"expected Hana's balance to be {money(3800)} after the swap, got {money(balance)}")
    demo.say(f"   Hana's balance is {money(balance)} again; the shadow table is gone.")

    demo.step("5. A test environment with Hana's history only: its own tables, log and state")
    prefix = f"{settings.prefix}-test-{demo.suffix}"
    code, report = ops(demo, "test-env", "--prefix", prefix, "--aggregate", hana, "--json")
    if code != 0:
        raise DemoError(f"python -m ops test-env exited {code}")
    made = json.loads(report)
    target = settings.with_prefix(prefix)
    log = demo.dynamodb().query(
        TableName=target.events_table,
        KeyConditionExpression="aggregate_id = :a",
        ExpressionAttributeValues={":a": {"S": hana}},
        ConsistentRead=True,
    )["Items"]
    versions = [int(item["version"]["N"]) for item in log]
    demo.say(f"   its events table {target.events_table}: {hana} v{versions[0]}..v{versions[-1]}")
    copy = StateStore(demo.dynamodb(), target.state_table).get(hana)
    live = states.get(hana)
    if versions != [1, 2, 3] or made["aggregates"] != 1 or copy is None or live is None:
        raise DemoError(f"expected Hana's three events (and only hers) in {prefix}, got {versions}")
    if (copy.version, copy.state) != (live.version, live.state):
        raise DemoError(f"expected {prefix}'s state of {hana} to equal the live one")
    demo.say(f"   its state of {hana}: v{copy.version}, balance {money(_balance(copy.state))}, as live.")
    demo.say(
        f"   Run it: python -m ops test-env --prefix {prefix} --aggregate {hana} --serve 8081"
        "   (its own API; nothing it does reaches the live stack)"
    )


def ops(demo: Demo, *argv: str) -> tuple[int, str]:
    """Run `python -m ops ARGV` in this process against the stack; print the command, its progress and its
    report; return the exit code and the report."""
    from ops.cli import main as ops_main

    demo.say(f"  $ python -m ops {' '.join(argv)}")
    out, err = io.StringIO(), io.StringIO()
    code = ops_main(list(argv), environ=demo.environment, out=out, err=err)
    for line in err.getvalue().splitlines():
        demo.say(f"    {line}")
    if "--json" not in argv:
        for line in out.getvalue().splitlines():
            demo.say(f"    {line}")
    return code, out.getvalue()


def _balance(state: Any) -> int:
    return int(state.get("balance", 0)) if isinstance(state, dict) else 0
