"""Operator commands over the log: rebuild state into a shadow table, compare, swap or drop it, and create
test environments from a subset of the log. `python -m ops --help`; docs/replays.md is the user's guide.

    compare      two state tables item by item (pure)          tables    shadow tables, reads, deletes
    replay       a replay in this process, and waiting for it   rebuild   rebuild, diff, swap, drop
    testenv      a test environment from a subset of the log    report    what the commands print
    cli          `python -m ops`
"""
