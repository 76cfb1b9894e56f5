"""The token broker: which bearer token a request carries, and when to fetch a new one.

Company tokens live 10 minutes. A web app serving thousands of companies must
never send an expired one, never make a request wait for a refresh it could
have done earlier, and never stampede the server when many requests for one
company arrive at once. The broker does this with three windows per token,
measured on the local clock from when the request that issued it was sent::

    issued            soft (50% left, jittered)    hard (10% left)     expiry
      |------ fresh: cached -----|--- stale: served, refreshed ---|-- wait --|
                                     in the background (once)

Sub-workspace tokens have no documented lifetime: they are cached from every
workspace the SDK sees and looked up again (once, for every waiter) on a miss
or after a 401.

Only the broker decides when to fetch; the session only asks it for a header
value (`Auth.token`) and reports refusals (`Auth.invalidate`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol, TypeVar

import attrs

from .errors import ClientClosedError
from .models import ApiToken, Workspace

__all__ = [
    "Clock",
    "InMemoryTokenStore",
    "TokenBroker",
    "TokenLease",
    "TokenStore",
    "lease_for",
]

log = logging.getLogger("conduit_async.tokens")

#: Unix seconds now; injectable so tests can make ten minutes pass in microseconds.
Clock = Callable[[], float]

#: Conduit documents company tokens as expiring 10 minutes after issue.
MAX_COMPANY_TOKEN_LIFETIME = 600.0

T = TypeVar("T")


@attrs.frozen
class TokenLease:
    """A company token with the local times that govern its use.

    Times are on the broker's clock (Unix seconds). `soft_at`: serve it, but
    refresh in the background. `hard_at`: stop serving it; callers wait for a
    new one. `expires_at`: the conservative local estimate of its expiry.
    """

    token: str = attrs.field(repr=False)
    issued_at: float
    soft_at: float
    hard_at: float
    expires_at: float

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at


def lease_for(
    api_token: ApiToken,
    *,
    sent_at: float,
    server_date: float | None,
    jitter: float = 0.0,
    soft_fraction: float = 0.5,
    hard_fraction: float = 0.1,
    max_lifetime: float = MAX_COMPANY_TOKEN_LIFETIME,
) -> TokenLease:
    """When to refresh and stop using a company token, in local time.

    The lifetime is what the server says is left (`expires_at` minus its
    `Date` header, less one second because `Date` is truncated to whole
    seconds), counted from when the request was *sent*: the earliest moment
    the token can have been issued. That cancels any offset between the two
    clocks. It is never more than `max_lifetime` (10 minutes). Without a
    `Date` header the clocks are assumed to agree.

    The margins are fractions of the lifetime, so a 4 s token behaves like a
    600 s one. `jitter` in [0, 1) moves the soft deadline earlier by up to a
    tenth of the lifetime so that companies provisioned together do not all
    refresh together.
    """
    server_expiry = api_token.expires_at.timestamp()
    if server_date is not None:
        remaining = server_expiry - server_date - 1.0
    else:
        remaining = server_expiry - sent_at
    lifetime = max(0.0, min(remaining, max_lifetime))
    soft_left = soft_fraction + 0.1 * jitter
    return TokenLease(
        token=api_token.token,
        issued_at=sent_at,
        soft_at=sent_at + lifetime * (1.0 - soft_left),
        hard_at=sent_at + lifetime * (1.0 - hard_fraction),
        expires_at=sent_at + lifetime,
    )


class TokenStore(Protocol):
    """Where company leases are kept, keyed by the lower-cased company id.

    Synchronous on purpose: the cache-hit path must not wait on I/O. A shared
    store (Redis, say) keeps a local copy and syncs it in the background.
    """

    def get(self, key: str) -> TokenLease | None: ...

    def put(self, key: str, lease: TokenLease) -> None: ...

    def discard(self, key: str, token: str) -> bool:
        """Drop the lease for `key` only if it still holds `token`; True if dropped."""
        ...

    def __len__(self) -> int: ...


class InMemoryTokenStore:
    """A bounded LRU of leases: the least recently used company is forgotten first."""

    __slots__ = ("_leases", "maxsize")

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._leases: OrderedDict[str, TokenLease] = OrderedDict()

    def get(self, key: str) -> TokenLease | None:
        lease = self._leases.get(key)
        if lease is not None:
            self._leases.move_to_end(key)
        return lease

    def put(self, key: str, lease: TokenLease) -> None:
        self._leases[key] = lease
        self._leases.move_to_end(key)
        if len(self._leases) > self.maxsize:
            self._leases.popitem(last=False)

    def discard(self, key: str, token: str) -> bool:
        lease = self._leases.get(key)
        if lease is not None and lease.token == token:
            del self._leases[key]
            return True
        return False

    def __len__(self) -> int:
        return len(self._leases)

    def __repr__(self) -> str:
        return f"InMemoryTokenStore(size={len(self._leases)}, maxsize={self.maxsize})"


CompanyFetch = Callable[[str], Awaitable[TokenLease]]
WorkspaceList = Callable[[], Awaitable[list[Workspace]]]


@attrs.define(eq=False)
class BrokerStats:
    """Counters for people and benchmarks: how often the broker went to the server."""

    company_fetches: int = 0
    background_refreshes: int = 0
    refresh_failures: int = 0
    workspace_lookups: int = 0


@attrs.define(eq=False)
class TokenBroker:
    """Caches sub-workspace and company tokens and refreshes company tokens ahead of expiry.

    `fetch_company(key)` gets a company from the server (which issues a fresh
    token) and returns its lease; `list_workspaces()` lists the organization's
    workspaces and hands them to `replace_workspaces`. Both are wired by the
    client: the broker decides *when* to call them, never how.

    Concurrent callers for one company share one fetch. The fetch is a task
    owned by the broker: a caller that is cancelled leaves it running for the
    others, and one whose callers all left still fills the cache.
    """

    fetch_company: CompanyFetch
    list_workspaces: WorkspaceList
    clock: Clock = time.time
    store: TokenStore = attrs.field(factory=InMemoryTokenStore)
    soft_fraction: float = 0.5
    hard_fraction: float = 0.1
    #: Backoff after a failed background refresh, as a fraction of the lifetime, doubling.
    retry_fraction: float = 0.02
    rng: random.Random = attrs.field(factory=random.Random, repr=False)
    stats: BrokerStats = attrs.field(factory=BrokerStats)
    #: Background refreshes allowed at once. Companies provisioned together come due
    #: together; past this, the others keep their (still fresh enough) token and start
    #: their refresh on a later call, instead of opening a burst of connections.
    max_background_refreshes: int = 16

    _inflight: dict[str, asyncio.Task[Any]] = attrs.field(init=False, factory=dict, repr=False)
    _retry_at: dict[str, tuple[float, int]] = attrs.field(init=False, factory=dict, repr=False)
    _ws_by_id: dict[int, Workspace] = attrs.field(init=False, factory=dict, repr=False)
    _ws_by_ext: dict[str, Workspace] = attrs.field(init=False, factory=dict, repr=False)
    _closed: bool = attrs.field(init=False, default=False, repr=False)
    #: Whether a full listing has been seen: a workspace missing from the cache is then
    #: missing from the organization (as of that listing, kept up to date by creates).
    workspaces_listed: bool = attrs.field(init=False, default=False)
    _background: int = attrs.field(init=False, default=0, repr=False)

    # -- company tokens -------------------------------------------------------

    def lease(
        self, api_token: ApiToken, *, sent_at: float, server_date: float | None
    ) -> TokenLease:
        """A lease for a token the server just issued, with this broker's margins and jitter."""
        return lease_for(
            api_token,
            sent_at=sent_at,
            server_date=server_date,
            jitter=self.rng.random(),
            soft_fraction=self.soft_fraction,
            hard_fraction=self.hard_fraction,
        )

    def remember_company(self, company_id: str, lease: TokenLease) -> None:
        """Cache a company token from any response that carried one (create, get, update, list)."""
        key = company_id.lower()
        current = self.store.get(key)
        # A slow response must not replace a token issued later.
        if current is None or lease.issued_at >= current.issued_at:
            self.store.put(key, lease)
            self._retry_at.pop(key, None)

    def cached_company_token(self, company_id: str) -> str | None:
        """The cached token for `company_id` if it may still be sent, else None. No I/O.

        A token past its soft deadline is still returned, and its refresh
        starts in the background; one past its hard deadline is not.
        """
        key = company_id.lower()
        lease = self.store.get(key)
        if lease is None:
            return None
        now = self.clock()
        if now < lease.soft_at:
            return lease.token
        if now < lease.hard_at:
            self._refresh_in_background(key, now, lease)
            return lease.token
        return None

    async def company_token(self, company_id: str) -> str:
        """A token for `company_id` with life left, fetching one only when needed.

        The fast path (a fresh cached token) takes no lock and does no I/O.
        """
        token = self.cached_company_token(company_id)
        if token is not None:
            return token
        key = company_id.lower()
        return (await self._shared("company:" + key, self._fetch_company(key))).token

    async def company_refused(self, company_id: str, token: str) -> bool:
        """The server refused `token`: forget it, unless a newer one has replaced it already."""
        if self.store.discard(company_id.lower(), token):
            log.debug("company token refused; dropped it (company %s)", company_id)
        return True

    def _refresh_in_background(self, key: str, now: float, lease: TokenLease) -> None:
        if "company:" + key in self._inflight or self._closed:
            return
        if self._background >= self.max_background_refreshes:
            return
        retry = self._retry_at.get(key)
        if retry is not None and now < retry[0]:
            return
        self.stats.background_refreshes += 1
        self._background += 1
        task = self._start("company:" + key, self._fetch_company(key))
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

    async def _fetch_company(self, key: str) -> TokenLease:
        self.stats.company_fetches += 1
        lease = await self.fetch_company(key)
        self.remember_company(key, lease)
        return lease

    # -- workspace tokens -----------------------------------------------------

    def remember_workspaces(self, workspaces: Iterable[Workspace]) -> None:
        """Cache the tokens of workspaces from any list or create response."""
        for ws in workspaces:
            self._ws_by_id[ws.id] = ws
            if ws.ext_id is not None:
                self._ws_by_ext[ws.ext_id] = ws

    def replace_workspaces(self, workspaces: Iterable[Workspace]) -> None:
        """Cache exactly these workspaces: a full listing is the whole truth, so a
        workspace missing from it (disabled) is gone."""
        self._ws_by_id.clear()
        self._ws_by_ext.clear()
        self.remember_workspaces(workspaces)
        self.workspaces_listed = True

    def forget_workspace(self, workspace_id: int) -> None:
        """Drop a workspace the SDK disabled: its token no longer works."""
        ws = self._ws_by_id.pop(workspace_id, None)
        if ws is not None and ws.ext_id is not None and self._ws_by_ext.get(ws.ext_id) is ws:
            del self._ws_by_ext[ws.ext_id]

    def cached_workspace(self, workspace_id: int | None, ext_id: str | None) -> Workspace | None:
        if workspace_id is not None:
            return self._ws_by_id.get(workspace_id)
        return self._ws_by_ext.get(ext_id) if ext_id is not None else None

    async def workspace(self, workspace_id: int | None, ext_id: str | None) -> Workspace | None:
        """The workspace (with its token), listing workspaces once on a miss; None if
        the listing does not have it either."""
        ws = self.cached_workspace(workspace_id, ext_id)
        if ws is not None:
            return ws
        await self._shared("workspaces:", self._list_workspaces())
        return self.cached_workspace(workspace_id, ext_id)

    async def workspace_refused(
        self, workspace_id: int | None, ext_id: str | None, token: str
    ) -> bool:
        ws = self.cached_workspace(workspace_id, ext_id)
        if ws is not None and ws.token == token:
            self.forget_workspace(ws.id)
        return True

    async def _list_workspaces(self) -> None:
        # The listing fills the cache through `replace_workspaces` as it returns.
        self.stats.workspace_lookups += 1
        await self.list_workspaces()

    # -- single flight ----------------------------------------------------------

    async def _shared(self, key: str, work: Coroutine[Any, Any, T]) -> T:
        """Join the fetch under way for `key`, or start `work` as that fetch."""
        task = self._inflight.get(key)
        if task is None:
            task = self._start(key, work)
        else:
            work.close()  # never awaited by design: the running fetch serves this caller
        # shield: cancelling this caller must not cancel the fetch the others wait on.
        result: T = await asyncio.shield(task)
        return result

    def _start(self, key: str, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        if self._closed:
            work.close()
            raise ClientClosedError("the token broker is closed; create a new Conduit client")
        task = asyncio.get_running_loop().create_task(work, name=f"conduit-token:{key}")
        self._inflight[key] = task
        task.add_done_callback(lambda t: self._finished(key, t))
        return task

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved, so a fetch nobody awaited never warns

    @property
    def inflight(self) -> int:
        """Fetches under way now."""
        return len(self._inflight)

    async def aclose(self) -> None:
        """Cancel fetches under way and wait for them: nothing is left pending."""
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
