"""Token stores shared between processes: `RedisTokenStore` (the `redis` extra).

``pip install "conduit-async[redis]"``, then either pass
``Conduit(token_store=RedisTokenStore.from_url("redis://host:6379/0", key=...))`` or
set ``CONDUIT_TOKEN_STORE_URL`` and ``CONDUIT_TOKEN_STORE_KEY`` so that every
``Conduit()`` in every worker shares one token cache with no code change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ConfigurationError
from ..tokens import InMemoryTokenStore, TokenStore
from ._redis import RedisStoreStats, RedisTokenStore

__all__ = ["RedisStoreStats", "RedisTokenStore", "choose_token_store", "store_from_env"]

_SCHEMES = ("redis://", "rediss://", "unix://")


def store_from_env(maxsize: int, environ: Mapping[str, str] = os.environ) -> TokenStore | None:
    """The shared store `CONDUIT_TOKEN_STORE_URL` names (keyed by
    `CONDUIT_TOKEN_STORE_KEY`), or None when it is not set.

    `ConfigurationError` for a URL that is not Redis's, a missing or malformed key,
    or a missing extra (naming the extra to install); never echoing the URL or key.
    """
    url = environ.get("CONDUIT_TOKEN_STORE_URL")
    if not url:
        return None
    if not url.startswith(_SCHEMES):
        raise ConfigurationError(
            "CONDUIT_TOKEN_STORE_URL must be a Redis URL (redis://, rediss:// or unix://)"
        )
    key = environ.get("CONDUIT_TOKEN_STORE_KEY") or None
    if key is None:
        raise ConfigurationError(
            "CONDUIT_TOKEN_STORE_URL is set but CONDUIT_TOKEN_STORE_KEY is not: the shared "
            "store encrypts tokens with that key (32 bytes in urlsafe base64)"
        )
    return RedisTokenStore.from_url(url, key=key, maxsize=maxsize)


def choose_token_store(explicit: TokenStore | None, maxsize: int) -> TokenStore:
    """The store a `Conduit` uses: the one passed, else the one the environment names,
    else an in-memory LRU of `maxsize` leases. (An empty store is still a store: `is None`,
    never truthiness, decides.)"""
    if explicit is not None:
        return explicit
    from_env = store_from_env(maxsize)
    return from_env if from_env is not None else InMemoryTokenStore(maxsize)
