"""The replayer's control plane: listing a stream's shards page by page, and never for ever."""

from __future__ import annotations

from typing import Any

import pytest

from eventlog.settings import Settings
from replayer.connect import AwsConnection
from replayer.errors import SetupError


class Pages:
    """Makes ListShards answer one shard a page (MaxResults=1), so a two-shard stream takes two pages; or, with
    `stuck`, answers every page with the same NextToken (and the first page again), as a broken endpoint."""

    def __init__(self, stuck: bool = False) -> None:
        self.stuck = stuck
        self.calls: list[dict[str, Any]] = []

    def provide(self, params: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append(dict(params))  # what the replayer asked for
        if self.stuck and "NextToken" in params:
            return {"StreamName": self.stream}
        # moto, unlike Kinesis, wants a follow-up page asked with the first page's parameters.
        return {**params, "StreamName": self.stream, "MaxResults": 1}

    def after(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.stuck:
            parsed["NextToken"] = "the-same-token"

    def on(self, client: Any, stream: str) -> None:
        self.stream = stream
        client.meta.events.register("provide-client-params.kinesis.ListShards", self.provide)
        client.meta.events.register("after-call.kinesis.ListShards", self.after)


@pytest.mark.asyncio
async def test_shards_are_listed_page_by_page_without_the_stream_name_after_the_first(
    settings: Settings,
) -> None:
    pages = Pages()
    async with AwsConnection(settings) as connection:
        pages.on(connection.kinesis, settings.playback_stream)
        info = await connection.describe_stream(settings.playback_stream)
    assert len(info.shard_map.shards) == 2
    assert [sorted(c) for c in pages.calls] == [["StreamName"], ["NextToken"]]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_a_next_token_handed_out_twice_ends_the_listing_with_an_error(settings: Settings) -> None:
    pages = Pages(stuck=True)
    async with AwsConnection(settings) as connection:
        pages.on(connection.kinesis, settings.playback_stream)
        with pytest.raises(SetupError, match="ListShards handed out the same NextToken twice"):
            await connection.describe_stream(settings.playback_stream)
    assert len(pages.calls) == 2
