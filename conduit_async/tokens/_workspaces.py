"""Workspace tokens: cached from every workspace the SDK sees, looked up again on a miss.

Sub-workspace tokens have no documented lifetime. They are kept (bounded) from
every listing and create, and a miss or a refusal (401) lists the
organization's workspaces once for every caller waiting; with a shared store,
once for every process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

import attrs

from ..models import Workspace
from ._flight import SingleFlight
from ._shared import SharedTokenStore
from ._stats import BrokerStats
from ._stores import WorkspaceStore

__all__ = ["WorkspaceTokens"]

_LISTING = "workspaces"


@attrs.define(eq=False)
class WorkspaceTokens:
    """The workspace half of the broker, over a bounded `WorkspaceStore`.

    `list_workspaces()` lists the organization's workspaces and hands them to
    `replace` (the client wires it): the broker decides when, never how.
    """

    list_workspaces: Callable[[], Awaitable[Sequence[Workspace]]]
    store: WorkspaceStore
    flight: SingleFlight
    stats: BrokerStats
    shared: SharedTokenStore | None = None
    #: Whether a full listing has been seen: a workspace missing from the cache is then
    #: missing from the organization (as of that listing, kept up to date by creates).
    listed: bool = False

    def remember(self, workspaces: Iterable[Workspace]) -> None:
        for ws in workspaces:
            self.store.put(ws)

    def replace(self, workspaces: Iterable[Workspace]) -> None:
        """A full listing is the whole truth: a workspace missing from it (disabled) is gone."""
        self.store.clear()
        self.remember(workspaces)
        self.listed = True

    def forget(self, workspace_id: int) -> None:
        ws = self.store.discard(workspace_id)
        if ws is not None and self.shared is not None:
            self.shared.workspaces_changed(None)

    def cached(self, workspace_id: int | None, ext_id: str | None) -> Workspace | None:
        """`AmbiguousWorkspaceError` when `ext_id` belongs to more than one workspace."""
        if workspace_id is not None:
            return self.store.get(workspace_id)
        return self.store.by_ext_id(ext_id) if ext_id is not None else None

    async def ensure_listed(self) -> None:
        """Make the cache hold a full listing: this process's, or one another process
        shared."""
        if not self.listed:
            await self.flight.run(_LISTING, self._look_up_any)

    async def _look_up_any(self) -> bool:
        if self.shared is None:
            await self._list()
            return True
        adopted = await self.shared.obtain_workspaces(lambda _: True, self._list)
        if adopted is None:
            return True
        self.replace(adopted)
        return False

    async def find(self, workspace_id: int | None, ext_id: str | None) -> Workspace | None:
        ws = self.cached(workspace_id, ext_id)
        if ws is not None:
            return ws
        listed = await self.flight.run(_LISTING, lambda: self._look_up(workspace_id, ext_id))
        ws = self.cached(workspace_id, ext_id)
        if ws is None and not listed:
            # Joined a lookup that adopted another process's listing without this one.
            await self.flight.run(_LISTING, lambda: self._look_up(None, None))
            ws = self.cached(workspace_id, ext_id)
        return ws

    async def refused(self, workspace_id: int | None, ext_id: str | None, token: str) -> bool:
        ws = self.cached(workspace_id, ext_id)
        if ws is not None and ws.token == token:
            self.store.discard(ws.id)
        if self.shared is not None:
            self.shared.workspaces_changed(token)
        return True

    async def _look_up(self, workspace_id: int | None, ext_id: str | None) -> bool:
        """Fill the cache; True when that took a listing of our own."""
        if self.shared is None:
            await self._list()
            return True

        def wanted(workspaces: Sequence[Workspace]) -> bool:
            if workspace_id is None and ext_id is None:
                return False
            return any(
                ws.id == workspace_id if workspace_id is not None else ws.ext_id == ext_id
                for ws in workspaces
            )

        adopted = await self.shared.obtain_workspaces(wanted, self._list)
        if adopted is None:
            return True
        self.replace(adopted)
        return False

    async def _list(self) -> Sequence[Workspace]:
        # The listing fills the cache through `replace` as it returns.
        self.stats.workspace_lookups += 1
        return await self.list_workspaces()
