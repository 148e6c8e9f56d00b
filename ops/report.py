"""What the operator commands print: a short plain-text report (stdout), or one JSON object with `--json`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ops.compare import StateDiff
from ops.rebuild import RebuildRecord, SwapResult
from ops.testenv import TestEnvironment

DEFAULT_LIMIT = 20


def as_json(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def _short(value: Any, width: int = 60) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _ids(ids: Sequence[str], limit: int) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" ... and {len(ids) - limit:,} more" if len(ids) > limit else "")


def diff_text(record: RebuildRecord, diff: StateDiff, limit: int = DEFAULT_LIMIT) -> str:
    """The diff of a rebuild, for a reader."""
    counts = diff.counts()
    lines = [
        f"rebuild {record.rebuild_id} ({record.status}): shadow {record.shadow_table} vs live {record.live_table}",
        f"  compared {counts['compared']:,} aggregate(s): {counts['same']:,} same, {counts['differ']:,} differ, "
        f"{counts['missing']:,} missing, {counts['extra']:,} extra, {counts['behind']:,} behind",
    ]
    if diff.differ:
        lines.append("  differ (live is not what the log gives):")
        for d in diff.differ[:limit]:
            version = (
                f"v{d.live_version}"
                if d.live_version == d.shadow_version
                else f"live v{d.live_version}, rebuilt v{d.shadow_version}"
            )
            lines.append(f"    {d.aggregate_id} ({version}):")
            for f in d.fields:
                lines.append(f"      {f.name}: live {_short(f.live)}, rebuilt {_short(f.shadow)}")
        if len(diff.differ) > limit:
            lines.append(f"    ... and {len(diff.differ) - limit:,} more")
    if diff.missing:
        lines.append(
            f"  missing (in live, not in the rebuild: no events explain them): {_ids(diff.missing, limit)}"
        )
    if diff.extra:
        lines.append(f"  extra (in the rebuild, not in live): {_ids(diff.extra, limit)}")
    if diff.behind:
        shown = [
            f"{b.aggregate_id} (live v{b.live_version}, rebuilt v{b.shadow_version})" for b in diff.behind
        ]
        lines.append(f"  behind (live moved on during the rebuild; not compared): {_ids(shown, limit)}")
    if record.status in ("ready", "swapping"):
        if diff.equal:
            lines.append(
                f"  the rebuild equals the live state; drop it: python -m ops drop {record.rebuild_id}"
            )
        else:
            lines.append(
                f"  next: python -m ops swap {record.rebuild_id}   (or discard it: python -m ops drop "
                f"{record.rebuild_id})"
            )
    return "\n".join(lines)


def diff_json(record: RebuildRecord, diff: StateDiff, limit: int | None = None) -> str:
    return as_json({"rebuild": record.to_dict(), "diff": diff.to_dict(limit)})


_REASONS = {
    "live_older": "live is at an older version than the rebuild (is its write function behind?); "
    "--include-behind writes them",
    "live_lacks": "live has no item (lost, or its write function is behind); --include-behind writes them",
    "live_ahead": "live kept moving on during the catch-up rounds; run swap again",
    "only_live": "only live has them (no events explain them); --delete-missing deletes them",
    "live_kept_changing": "live changed under every attempt; run swap again",
}


def swap_text(result: SwapResult, limit: int = DEFAULT_LIMIT) -> str:
    record = result.record
    lines = [
        f"rebuild {record.rebuild_id} ({record.status}): {len(result.written):,} item(s) written to "
        f"{record.live_table}" + (f", {len(result.deleted):,} deleted" if result.deleted else "")
    ]
    if result.written:
        lines.append(f"  written: {_ids(result.written, limit)}")
    for reason, ids in sorted(result.not_swapped.items()):
        if ids:
            lines.append(f"  not swapped, {_REASONS.get(reason, reason)}: {_ids(ids, limit)}")
    if result.shadow_deleted:
        lines.append(f"  deleted the shadow table {record.shadow_table}")
    elif record.status == "swapped":
        lines.append(f"  kept the shadow table {record.shadow_table} (--keep-shadow)")
    return "\n".join(lines)


def swap_json(result: SwapResult, limit: int | None = None) -> str:
    return as_json({"rebuild": result.record.to_dict(), "swap": result.to_dict(limit)})


def records_text(records: Sequence[RebuildRecord]) -> str:
    if not records:
        return "no rebuilds"
    lines = []
    for r in records:
        diff = ", ".join(f"{k} {v}" for k, v in r.diff.items() if k != "compared" and v) or "-"
        lines.append(f"{r.rebuild_id}  {r.status:<9}  {r.shadow_table}  {r.created_at}  {diff}")
    return "\n".join(lines)


def environment_text(env: TestEnvironment, limit: int = DEFAULT_LIMIT) -> str:
    """What a test environment holds, and how to point commands at it."""
    lines = [
        f"test environment {env.prefix}: {env.aggregates:,} aggregate(s), {env.events:,} event(s) "
        f"({env.copied:,} copied now, {env.events - env.copied:,} there already)",
        f"  subset: {env.selection.describe()}",
    ]
    if env.created:
        lines.append(f"  created: {', '.join(env.created)}")
    if env.recordings:
        lines.append(f"  gateway recordings copied: {env.recordings:,}")
    lines.append(
        f"  state: {env.states:,} aggregate(s) projected into {env.settings.state_table}"
        if env.states
        else "  state: left to the test environment's write function (--no-state)"
    )
    shown = [f"{a} v1..v{v}" for a, v in sorted(env.versions.items())]
    if shown:
        lines.append(f"  histories: {_ids(shown, limit)}")
    # A shell that sourced the source stack's .devstack/env names every table and stream of that stack: the
    # prefix alone does not move it.
    lines.append(
        f"  use it: ES_NAME_PREFIX={env.prefix} with the same endpoint and region, in a shell where no"
        " ES_*_TABLE or ES_*_STREAM names another stack's (--serve prints every export)"
    )
    return "\n".join(lines)
