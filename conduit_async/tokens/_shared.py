"""What a store shared between processes (Redis) offers the broker, beyond a `TokenStore`.

The broker's in-memory copy stays the hit path; a shared store is asked only on
a miss, when a lease enters its refresh window, and when a token is refused.
Its job there is to make one fetch serve every process. The in-memory stores
do not implement this: without one, the broker fetches for itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from ..models import Workspace
from ._lease import Clock, TokenLease
from ._stores import TokenStore

__all__ = ["Connectable", "LeaseFetch", "Pausable", "SharedTokenStore", "WorkspaceListing"]

LeaseFetch = Callable[[], Awaitable[TokenLease]]
WorkspaceListing = Callable[[], Awaitable[Sequence[Workspace]]]


class Pausable(Protocol):
    """The session's shared 429 pause, as a shared store sees it."""

    on_pause: Callable[[float], None] | None

    def hold(self, seconds: float) -> None:
        """Pause every request for `seconds` without telling anyone (a pause heard from
        another process)."""
        ...


@runtime_checkable
class Connectable(Protocol):
    """A store that can connect up front, so that a misconfiguration fails at startup."""

    async def connect(self, *, required: bool = True) -> None:
        """Connect now. `ConfigurationError` if the store refuses this client's
        credentials, or (when `required`) cannot be reached."""
        ...


@runtime_checkable
class SharedTokenStore(TokenStore, Protocol):
    """A `TokenStore` whose leases (and workspace tokens) other processes share."""

    def bind(
        self,
        *,
        link_token: str | None,
        org_token: str | None,
        clock: Clock,
        pause: Pausable,
        request_timeout: float | None = None,
    ) -> None:
        """Serve one client: its tokens name the namespace (only their fingerprints are
        kept), its session's 429 pauses are shared, and waits for another process's
        fetch are bounded by a fraction of `request_timeout`."""
        ...

    async def obtain_company(
        self, key: str, current: TokenLease | None, fetch: LeaseFetch
    ) -> TokenLease:
        """A lease for `key` with more life than `current`: adopted from another process,
        or `fetch()`ed once for all of them. Never fails for the store's own reasons."""
        ...

    async def company_refused(
        self, key: str, token: str, issued_at: float | None = None
    ) -> TokenLease | None:
        """The server refused `token` (issued at `issued_at`, if known): drop the shared
        lease if it still holds it. If it holds one issued later instead, that lease is
        returned (and kept in this store), found in the same round trip: the caller
        retries with it rather than fetching."""
        ...

    async def obtain_workspaces(
        self, wanted: Callable[[Sequence[Workspace]], bool], listing: WorkspaceListing
    ) -> Sequence[Workspace] | None:
        """Workspaces another process listed, if they include what is `wanted`; else
        `listing()` runs (once for all processes) and None is returned."""
        ...

    def workspaces_changed(self, refused_token: str | None) -> None:
        """A workspace token was refused or a workspace disabled: the shared listing is
        out of date."""
        ...

    async def aclose(self) -> None: ...
