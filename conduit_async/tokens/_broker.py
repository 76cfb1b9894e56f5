"""`TokenBroker`: the one object the client and its resources ask for tokens.

A thin facade over three small parts: company leases (`CompanyLeases`, over a
`TokenStore`), workspace tokens (`WorkspaceTokens`, over a bounded
`WorkspaceStore`) and the single flight they share. Only the broker decides
when to fetch; the session only asks for a header value (`Auth.token`) and
reports refusals (`Auth.invalidate`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from ..models import ApiToken, Workspace
from ._companies import CompanyLeases
from ._flight import KeyedLock, SingleFlight
from ._lease import Clock, TokenLease, lease_for
from ._shared import Connectable, Pausable, SharedTokenStore
from ._stats import BrokerStats
from ._stores import (
    DEFAULT_CACHE_SIZE,
    InMemoryTokenStore,
    InMemoryWorkspaceStore,
    TokenStore,
    WorkspaceStore,
)
from ._workspaces import WorkspaceTokens

__all__ = ["TokenBroker"]

CompanyFetch = Callable[[str], Awaitable[TokenLease]]
WorkspaceList = Callable[[], Awaitable[Sequence[Workspace]]]


class TokenBroker:
    """Caches sub-workspace and company tokens and refreshes company tokens ahead of expiry.

    `fetch_company(key)` gets a company from the server (which issues a fresh
    token) and returns its lease; `list_workspaces()` lists the organization's
    workspaces and hands them to `replace_workspaces`. Both are wired by the
    client: the broker decides *when* to call them, never how.

    Concurrent callers for one company share one fetch. The fetch is a task
    owned by the broker: a caller that is cancelled leaves it running for the
    others, and one whose callers all left still fills the cache. The
    workspace cache is bounded like the company one (`workspace_store`, by
    default an LRU of the company store's `maxsize`).
    """

    #: The hot path of every company call, bound at construction (no extra call layer):
    #: the cached token if it may still be sent, else None; no I/O. A token past its soft
    #: deadline is still returned and its refresh starts in the background; one past its
    #: hard deadline is not.
    cached_company_token: Callable[[str], str | None]

    def __init__(
        self,
        fetch_company: CompanyFetch,
        list_workspaces: WorkspaceList,
        *,
        clock: Clock = time.time,
        store: TokenStore | None = None,
        workspace_store: WorkspaceStore | None = None,
        soft_fraction: float = 0.5,
        hard_fraction: float = 0.1,
        retry_fraction: float = 0.02,
        rng: random.Random | None = None,
        max_background_refreshes: int = 16,
    ) -> None:
        self.fetch_company = fetch_company
        self.list_workspaces = list_workspaces
        self.clock = clock
        self.store: TokenStore = store if store is not None else InMemoryTokenStore()
        self.soft_fraction = soft_fraction
        self.hard_fraction = hard_fraction
        self.rng = rng if rng is not None else random.Random()
        self.stats = BrokerStats()
        self._flight = SingleFlight()
        shared = self.store if isinstance(self.store, SharedTokenStore) else None
        self._companies = CompanyLeases(
            # Looked up at each fetch, so the client (or a test) may rewire it.
            fetch=lambda key: self.fetch_company(key),
            store=self.store,
            clock=clock,
            flight=self._flight,
            stats=self.stats,
            retry_fraction=retry_fraction,
            max_background=max_background_refreshes,
        )
        if workspace_store is None:
            size = getattr(self.store, "maxsize", DEFAULT_CACHE_SIZE)
            workspace_store = InMemoryWorkspaceStore(size)
        self._workspaces = WorkspaceTokens(
            list_workspaces=lambda: self.list_workspaces(),
            store=workspace_store,
            flight=self._flight,
            stats=self.stats,
            shared=shared,
        )
        self.cached_company_token = self._companies.cached_token
        #: Held while a workspace with an ext_id is created: a second create of the same
        #: ext_id waits, then finds the first one's workspace in the cache.
        self.creating = KeyedLock()

    # -- company tokens -------------------------------------------------------

    def remember_issued(
        self, company_id: str, api_token: ApiToken, sent_at: float, server_date: float | None
    ) -> TokenLease:
        """Cache the company token a response just carried (create, get, update, list),
        and return its lease, with this broker's margins and jitter. A token issued
        already expired is not kept."""
        lease = lease_for(
            api_token,
            sent_at,
            server_date,
            self.rng.random(),
            self.soft_fraction,
            self.hard_fraction,
        )
        self._companies.remember(company_id, lease)
        return lease

    def remember_company(self, company_id: str, lease: TokenLease) -> None:
        """Cache a company token from any response that carried one (create, get, update,
        list). A token issued already expired is not kept."""
        self._companies.remember(company_id, lease)

    async def company_token(self, company_id: str) -> str:
        """A token for `company_id` with life left, fetching one only when needed.

        The fast path (a fresh cached token) takes no lock and does no I/O. A
        fetch that brings back a token already expired raises
        `ResponseFormatError` (to every caller waiting on it); it is not sent.
        """
        # A hit runs in this one coroutine: no layer below it per call.
        token = self.cached_company_token(company_id)
        return token if token is not None else await self._companies.fetched_token(company_id)

    async def fetched_company_token(self, company_id: str) -> str:
        """A token from a fetch, without looking in the cache first: for a caller that
        has just seen `cached_company_token` miss (which counted the miss). A fetch
        already under way for the company is joined, not repeated."""
        return await self._companies.fetched_token(company_id)

    async def company_refused(self, company_id: str, token: str) -> bool:
        """The server refused `token`: forget it, unless a newer one has replaced it already."""
        return await self._companies.refused(company_id, token)

    # -- workspace tokens -----------------------------------------------------

    def remember_workspaces(self, workspaces: Iterable[Workspace]) -> None:
        """Cache the tokens of workspaces from any list or create response."""
        self._workspaces.remember(workspaces)

    def replace_workspaces(self, workspaces: Iterable[Workspace]) -> None:
        """Cache exactly these workspaces: a full listing is the whole truth, so a
        workspace missing from it (disabled) is gone."""
        self._workspaces.replace(workspaces)

    def forget_workspace(self, workspace_id: int) -> None:
        """Drop a workspace the SDK disabled: its token no longer works."""
        self._workspaces.forget(workspace_id)

    def cached_workspace(self, workspace_id: int | None, ext_id: str | None) -> Workspace | None:
        """The cached workspace, no I/O. `AmbiguousWorkspaceError` when `ext_id` belongs to
        more than one cached workspace (the server does not enforce uniqueness)."""
        return self._workspaces.cached(workspace_id, ext_id)

    async def workspace(self, workspace_id: int | None, ext_id: str | None) -> Workspace | None:
        """The workspace (with its token), listing workspaces once on a miss; None if
        the listing does not have it either. `AmbiguousWorkspaceError` as for
        `cached_workspace`."""
        if workspace_id is None and not self._workspaces.listed:
            # Until a full listing is seen, a cached hit by ext_id proves nothing: Conduit
            # lets two workspaces share one, and only a listing shows both.
            await self._workspaces.ensure_listed()
        return await self._workspaces.find(workspace_id, ext_id)

    @property
    def workspaces_listed(self) -> bool:
        """Whether a full listing of the workspaces has been seen."""
        return self._workspaces.listed

    async def workspace_refused(
        self, workspace_id: int | None, ext_id: str | None, token: str
    ) -> bool:
        """The server refused a workspace token: forget it (a lookup fetches it again)."""
        return await self._workspaces.refused(workspace_id, ext_id, token)

    # -- sharing and lifecycle ------------------------------------------------------

    def bind(
        self,
        *,
        link_token: str | None,
        org_token: str | None,
        pause: Pausable,
        request_timeout: float | None = None,
    ) -> None:
        """Tell a shared store which Link APP and organization this client serves, share
        its session's 429 pauses, and bound waits on other processes by a fraction of
        `request_timeout`. Nothing to do for an in-memory store."""
        if isinstance(self.store, SharedTokenStore):
            self.store.bind(
                link_token=link_token,
                org_token=org_token,
                clock=self.clock,
                pause=pause,
                request_timeout=request_timeout,
            )

    async def connect(self, *, required: bool = True) -> None:
        """Connect a store that can connect up front (Redis): credentials it refuses are
        a `ConfigurationError` now, and so is a store that cannot be reached when
        `required`. Nothing to do for an in-memory store."""
        if isinstance(self.store, Connectable):
            await self.store.connect(required=required)

    @property
    def inflight(self) -> int:
        """Fetches under way now."""
        return len(self._flight)

    async def aclose(self) -> None:
        """Cancel fetches under way and wait for them (their waiters get
        `ClientClosedError`); close a shared store's connections."""
        await self._flight.aclose()
        if isinstance(self.store, SharedTokenStore):
            await self.store.aclose()

    def __repr__(self) -> str:
        return f"TokenBroker(store={self.store!r}, inflight={self.inflight}, stats={self.stats!r})"
