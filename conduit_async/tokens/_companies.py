"""Company leases: which company token a request carries, and when to fetch a new one.

A web app serving thousands of companies must never send an expired token,
never make a request wait for a refresh it could have done earlier, and never
stampede the server when many requests for one company arrive at once. So a
lease is served as is while fresh, served and refreshed in the background (once)
while stale, and waited for past its hard deadline (see `_lease`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from ._flight import SingleFlight
from ._lease import Clock, TokenLease, expired_on_issue
from ._shared import SharedTokenStore
from ._stats import BrokerStats
from ._stores import TokenStore

__all__ = ["CompanyLeases"]

log = logging.getLogger("conduit_async.tokens")


@attrs.define(eq=False)
class CompanyLeases:
    """The company half of the broker, over a `TokenStore` keyed by lower-cased id.

    `fetch(key)` gets the company from the server (which issues a fresh token)
    and returns its lease; with a shared store that fetch is made once for every
    process sharing it.
    """

    fetch: Callable[[str], Awaitable[TokenLease]]
    store: TokenStore
    clock: Clock
    flight: SingleFlight
    stats: BrokerStats
    #: Backoff after a failed background refresh, as a fraction of the lifetime, doubling.
    retry_fraction: float = 0.02
    max_background: int = 16
    _shared: SharedTokenStore | None = attrs.field(init=False, default=None)
    _retry_at: dict[str, tuple[float, int]] = attrs.field(init=False, factory=dict)
    _background: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.store, SharedTokenStore):
            self._shared = self.store

    def remember(self, company_id: str, lease: TokenLease) -> None:
        if lease.expires_at <= lease.issued_at:  # `dead`, without a property call
            return  # nothing to serve; a fetch for it reports the server's error
        key = company_id.lower()
        store = self.store
        current = store.get(key)
        # A slow response must not replace a token issued later.
        if current is None or lease.issued_at >= current.issued_at:
            store.put(key, lease)
            if self._retry_at:
                self._retry_at.pop(key, None)

    def cached_token(self, company_id: str) -> str | None:
        key = company_id.lower()
        lease = self.store.get(key)
        stats = self.stats
        if lease is not None:
            now = self.clock()
            if now < lease.soft_at:
                stats.cache_hits += 1
                return lease.token
            if now < lease.hard_at:
                stats.cache_hits += 1
                self._refresh_in_background(key, now, lease)
                return lease.token
        stats.cache_misses += 1
        return None

    async def fetched_token(self, company_id: str) -> str:
        """A token from a fetch (joining one under way), without looking in the cache:
        the path after `cached_token` missed, which has counted the miss."""
        key = company_id.lower()
        lease = await self.flight.run("company:" + key, lambda: self._fetch(key))
        return lease.token

    async def refused(self, company_id: str, token: str) -> bool:
        key = company_id.lower()
        store = self.store
        held = store.get(key)
        if store.discard(key, token):
            log.debug("company token refused; dropped it (company %s)", company_id)
        if self._shared is not None:
            # Only a lease issued after the refused one is worth a retry.
            issued_at = held.issued_at if held is not None and held.token == token else None
            newer = await self._shared.company_refused(key, token, issued_at)
            if newer is not None:
                self.remember(key, newer)
        return True

    def _refresh_in_background(self, key: str, now: float, lease: TokenLease) -> None:
        flight = self.flight
        if flight.closed or flight.running("company:" + key):
            return
        if self._background >= self.max_background:
            return
        retry = self._retry_at.get(key)
        if retry is not None and now < retry[0]:
            return
        self.stats.background_refreshes += 1
        self._background += 1
        task = flight.start("company:" + key, lambda: self._fetch(key))
        task.add_done_callback(lambda t: self._after_background(key, t, lease))

    def _after_background(self, key: str, task: asyncio.Task[Any], lease: TokenLease) -> None:
        self._background -= 1
        if task.cancelled() or task.exception() is None:
            return
        failures = self._retry_at.get(key, (0.0, 0))[1] + 1
        delay = max(0.05, lease.lifetime * self.retry_fraction) * 2 ** (failures - 1)
        self._retry_at[key] = (self.clock() + delay, failures)
        self.stats.refresh_failures += 1
        log.warning(
            "background refresh of company %s's token failed (%s); keeping the current "
            "token and retrying in %.1f s",
            key,
            type(task.exception()).__name__,
            delay,
        )

    async def _fetch(self, key: str) -> TokenLease:
        """The one place a company token is fetched (or adopted from other processes)."""
        shared = self._shared
        if shared is None:
            lease = await self._fetch_own(key)
        else:
            current = self.store.get(key)
            lease = await shared.obtain_company(key, current, lambda: self._fetch_own(key))
        self.remember(key, lease)
        return lease

    async def _fetch_own(self, key: str) -> TokenLease:
        self.stats.company_fetches += 1
        lease = await self.fetch(key)
        if lease.dead:
            self.stats.dead_tokens += 1
            raise expired_on_issue(key, lease)
        return lease
