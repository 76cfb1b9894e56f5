"""The token broker: which bearer token a request carries, and when to fetch a new one.

`TokenBroker` is the facade the client and its resources use. Behind it, three
small parts: company leases (`_companies`, over a `TokenStore`), workspace tokens
(`_workspaces`, over a bounded `WorkspaceStore`) and the single flight they share
(`_flight`). The lease maths is pure (`_lease`). A store shared between processes
(`conduit_async.stores.RedisTokenStore`) implements `SharedTokenStore`.
"""

from ._broker import TokenBroker
from ._lease import MAX_COMPANY_TOKEN_LIFETIME, Clock, TokenLease, lease_for
from ._shared import Pausable, SharedTokenStore
from ._stats import BrokerStats
from ._stores import (
    DEFAULT_CACHE_SIZE,
    InMemoryTokenStore,
    InMemoryWorkspaceStore,
    TokenStore,
    WorkspaceStore,
)

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "MAX_COMPANY_TOKEN_LIFETIME",
    "BrokerStats",
    "Clock",
    "InMemoryTokenStore",
    "InMemoryWorkspaceStore",
    "Pausable",
    "SharedTokenStore",
    "TokenBroker",
    "TokenLease",
    "TokenStore",
    "WorkspaceStore",
    "lease_for",
]
