"""Where the broker keeps tokens in memory: bounded LRUs, one for company leases and one
for workspaces.

Both are synchronous on purpose: the cache-hit path must not wait on I/O. A shared
store (Redis) keeps one of these as its local copy and syncs it in the background.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from ..errors import AmbiguousWorkspaceError
from ..models import Workspace
from ._lease import TokenLease

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "InMemoryTokenStore",
    "InMemoryWorkspaceStore",
    "TokenStore",
    "WorkspaceStore",
]

#: Entries each in-memory cache keeps before forgetting the least recently used.
DEFAULT_CACHE_SIZE = 10_000


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

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
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
        leases = self._leases
        leases[key] = lease
        leases.move_to_end(key)
        if len(leases) > self.maxsize:
            leases.popitem(last=False)

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


class WorkspaceStore(Protocol):
    """Where workspaces (and so their tokens) are kept, by id and by `ext_id`."""

    def get(self, workspace_id: int) -> Workspace | None: ...

    def by_ext_id(self, ext_id: str) -> Workspace | None:
        """The one workspace with `ext_id`; `AmbiguousWorkspaceError` if several have it."""
        ...

    def put(self, workspace: Workspace) -> None: ...

    def discard(self, workspace_id: int) -> Workspace | None:
        """Forget a workspace; the one forgotten, if it was there."""
        ...

    def clear(self) -> None: ...

    def __len__(self) -> int: ...


class InMemoryWorkspaceStore:
    """A bounded LRU of workspaces with an index by `ext_id`.

    The server does not enforce unique `ext_id`s, so the index keeps every id
    seen with one, and a lookup by an `ext_id` that two cached workspaces share
    raises `AmbiguousWorkspaceError` naming both, instead of picking one.
    """

    __slots__ = ("_by_ext", "_by_id", "maxsize")

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._by_id: OrderedDict[int, Workspace] = OrderedDict()
        self._by_ext: dict[str, set[int]] = {}

    def get(self, workspace_id: int) -> Workspace | None:
        ws = self._by_id.get(workspace_id)
        if ws is not None:
            self._by_id.move_to_end(workspace_id)
        return ws

    def by_ext_id(self, ext_id: str) -> Workspace | None:
        ids = self._by_ext.get(ext_id)
        if not ids:
            return None
        if len(ids) > 1:
            raise AmbiguousWorkspaceError(ext_id, ids)
        return self.get(next(iter(ids)))

    def put(self, workspace: Workspace) -> None:
        old = self._by_id.pop(workspace.id, None)
        if old is not None:
            self._unindex(old)
        self._by_id[workspace.id] = workspace
        if workspace.ext_id is not None:
            self._by_ext.setdefault(workspace.ext_id, set()).add(workspace.id)
        if len(self._by_id) > self.maxsize:
            _, evicted = self._by_id.popitem(last=False)
            self._unindex(evicted)

    def discard(self, workspace_id: int) -> Workspace | None:
        ws = self._by_id.pop(workspace_id, None)
        if ws is not None:
            self._unindex(ws)
        return ws

    def clear(self) -> None:
        self._by_id.clear()
        self._by_ext.clear()

    def _unindex(self, ws: Workspace) -> None:
        if ws.ext_id is None:
            return
        ids = self._by_ext.get(ws.ext_id)
        if ids is not None:
            ids.discard(ws.id)
            if not ids:
                del self._by_ext[ws.ext_id]

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"InMemoryWorkspaceStore(size={len(self._by_id)}, maxsize={self.maxsize})"
