"""The replayer: puts events from the events table on a Kinesis stream, in order per aggregate.

Run it as `python -m replayer` (replayer/cli.py), as the container built from replayer/Dockerfile (a Fargate
task), or inside the playback Lambda (handlers/playback.py). docs/replayer.md is the user's guide; the
modules, in the order a replay uses them:

    config       filters and options, validated once          plan        parts, worker shares, requests
    connect      AWS clients and the data-path transport      wire        signed JSON-protocol calls
    records      item -> PutRecords entry (the hot path)      parts       per-part watermark, read-ahead
    shards       shard map and per-shard pacing               sender      batching, retries, per-aggregate order
    checkpoints  the replay_checkpoints table                 engine      prepare, run, dry run
    report       progress bar / JSON lines and the summary    cli         `python -m replayer`
"""
