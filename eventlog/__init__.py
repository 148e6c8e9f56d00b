"""The shared core: event envelope, codecs, the event and state stores, settings and errors.

Nothing here creates an AWS client at import; clients are handed in (see `eventlog.aws`).
"""
