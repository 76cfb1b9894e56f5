"""`Conduit.stats()`: what the client has done so far, as numbers a person can watch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["Stats"]


@attrs.frozen
class Stats:
    """A snapshot of a client's counters since it was created.

    `requests` maps each endpoint template (`"GET /link/company/{cid}/"`) to
    counts by HTTP status (`"200"`, `"429"`, ...) or `"transport"` for an
    attempt that got no response; every attempt counts, retries included.
    `retries` counts resends by cause (`"rate_limit"`, `"transport"`, a
    status, or `"token"` for a resend with a fresh token after a 401).
    `pauses` and `paused_seconds`: the shared pauses 429s imposed.
    The rest are the token broker's: company token fetches (on a miss or
    near expiry), background refreshes and how many failed, workspace
    listings made to find a workspace's token, cache hits and misses of the
    company token cache, and fetches under way now.
    """

    requests: Mapping[str, Mapping[str, int]]
    retries: Mapping[str, int]
    pauses: int
    paused_seconds: float
    token_fetches: int
    background_refreshes: int
    refresh_failures: int
    workspace_lookups: int
    cache_hits: int
    cache_misses: int
    fetches_in_flight: int

    @property
    def requests_sent(self) -> int:
        """Every attempt sent, retries included."""
        return sum(sum(by_status.values()) for by_status in self.requests.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, e.g. for a metrics endpoint or the CLI's `--verbose` summary."""
        data: dict[str, Any] = attrs.asdict(self)
        data["requests"] = {k: dict(v) for k, v in self.requests.items()}
        data["retries"] = dict(self.retries)
        data["requests_sent"] = self.requests_sent
        return data
