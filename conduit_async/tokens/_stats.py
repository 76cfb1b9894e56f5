"""The broker's counters, for people and benchmarks: how often it went to the server."""

from __future__ import annotations

import attrs

__all__ = ["BrokerStats"]


@attrs.define(eq=False)
class BrokerStats:
    """How often the broker went to the server, and why."""

    #: Company tokens this process fetched itself (adopted ones are not counted).
    company_fetches: int = 0
    background_refreshes: int = 0
    refresh_failures: int = 0
    workspace_lookups: int = 0
    #: Company token lookups served from the cache (fresh or refreshing in the
    #: background), and those that had to wait for a fetch.
    cache_hits: int = 0
    cache_misses: int = 0
    #: Fetches that brought back a token already expired (never sent).
    dead_tokens: int = 0
