"""`Conduit`: configuration, lifecycle, and the resource attributes.

One `Conduit` per application: create it at start-up (or in `async with`),
share it between all handlers and tasks, close it at shutdown. It holds one
aiohttp session and one token broker.
"""

from __future__ import annotations

import ipaddress
import os
import random
import time
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from . import _validate
from ._auth import StaticAuth
from ._retry import RetryPolicy
from ._session import Session
from .errors import ConfigurationError, ValidationError
from .models import Company
from .resources.companies import Companies, CompanyView
from .resources.dashboards import Dashboards
from .resources.workspaces import Workspaces, WorkspaceView
from .stores import choose_token_store
from .tokens import Clock, TokenBroker, TokenLease, TokenStore

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LINK_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "Conduit",
]

DEFAULT_BASE_URL = "https://api.getconduit.app/v2/"
DEFAULT_LINK_BASE_URL = "https://api.getconduit.app/link/"
#: Seconds one request may take, from sending to the end of the body.
DEFAULT_TIMEOUT = 30.0
#: The connector's size (aiohttp's own default, stated here so every layer shares it).
DEFAULT_MAX_CONNECTIONS = 100


class Conduit:
    """The Conduit API client: v2 (workspaces, dashboards) and Link (companies).

    Tokens and base URLs not passed are read from `CONDUIT_TOKEN`,
    `CONDUIT_LINK_TOKEN`, `CONDUIT_BASE_URL` and `CONDUIT_LINK_BASE_URL`.
    Either token may be absent; a call that needs it raises
    `ConfigurationError` naming the variable.

    `session`: an aiohttp session you own (never closed by the SDK); by
    default one is created on first use, inside the running loop, with a
    connector of `max_connections`. `timeout` is per request, in seconds.
    `clock` (Unix seconds) is injectable for tests, as is the retry policy's
    sleep. A base URL that is not HTTPS is refused unless its host is
    loopback or `allow_insecure=True`: the bearer token would travel in clear.
    """

    def __init__(
        self,
        token: str | None = None,
        link_token: str | None = None,
        *,
        base_url: str | None = None,
        link_base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        token_cache_size: int = 10_000,
        token_store: TokenStore | None = None,
        clock: Clock | None = None,
        allow_insecure: bool = False,
        max_response_bytes: int = 16 * 1024 * 1024,
        seed: int | None = None,
    ) -> None:
        env = os.environ
        token = token if token is not None else env.get("CONDUIT_TOKEN") or None
        link_token = link_token if link_token is not None else env.get("CONDUIT_LINK_TOKEN") or None
        self.base_url = _base_url(
            base_url or env.get("CONDUIT_BASE_URL") or DEFAULT_BASE_URL, allow_insecure
        )
        self.link_base_url = _base_url(
            link_base_url or env.get("CONDUIT_LINK_BASE_URL") or DEFAULT_LINK_BASE_URL,
            allow_insecure,
        )
        if timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        self.clock: Clock = clock or time.time
        self._org_auth = StaticAuth(token, "organization token (CONDUIT_TOKEN)")
        self._link_auth = StaticAuth(link_token, "Link APP token (CONDUIT_LINK_TOKEN)")
        self._session = Session(
            retry=retry or RetryPolicy(),
            timeout=timeout,
            clock=self.clock,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            session=session,
        )
        self.workspaces = Workspaces(self)
        self.dashboards = Dashboards(self, self._org_auth)
        self.companies = Companies(self)
        self.tokens = TokenBroker(
            fetch_company=self._fetch_company_lease,
            list_workspaces=self.workspaces.list,
            clock=self.clock,
            store=choose_token_store(token_store, token_cache_size),
            rng=random.Random(seed),
        )
        self.tokens.bind(
            link_token=link_token, org_token=token, pause=self._session, request_timeout=timeout
        )

    def workspace(
        self, workspace_id: int | None = None, *, ext_id: str | None = None
    ) -> WorkspaceView:
        """A view of one sub-workspace whose calls use that workspace's own token.

        Name it by `workspace_id` or by `ext_id`; the token is looked up (once,
        for all concurrent callers) on first use.
        """
        if (workspace_id is None) == (ext_id is None):
            raise ValidationError(
                "workspace", "name the workspace by workspace_id or by ext_id (one of them)"
            )
        if workspace_id is not None:
            _validate.positive_id(workspace_id, "workspace_id")
        else:
            _validate.optional_text(ext_id, "ext_id")
        return WorkspaceView(self, workspace_id, ext_id)

    def company(self, company_id: str) -> CompanyView:
        """A view of one company whose calls use its own token, refreshed before it expires."""
        return CompanyView(self, _validate.company_id(company_id))

    @property
    def max_connections(self) -> int:
        """The connector's size: requests beyond it wait for a free connection."""
        return self._session.connection_limit

    @property
    def retry(self) -> RetryPolicy:
        """How requests are retried; bulk provisioning spaces its row retries by it too."""
        return self._session.retry

    @property
    def paused_for(self) -> float:
        """Seconds left of the pause a 429 imposed on every request (0 when not paused)."""
        return self._session.paused_for

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._session.requests_sent

    @property
    def closed(self) -> bool:
        return self._session.closed

    async def close(self) -> None:
        """Stop token refreshes under way and close the HTTP session (if the SDK made it)."""
        await self.tokens.aclose()
        await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Conduit(base_url={self.base_url!r}, link_base_url={self.link_base_url!r})"

    # -- wiring for the resources and the broker (not public) -------------------

    def _v2(self, path: str) -> str:
        return self.base_url + path

    def _link(self, path: str) -> str:
        return self.link_base_url + path

    def _remember_company(self, company: Company, lease: TokenLease) -> None:
        self.tokens.remember_company(company.id, lease)

    async def _fetch_company_lease(self, company_id: str) -> TokenLease:
        _, lease = await self.companies._get(company_id)
        return lease


def _base_url(url: str, allow_insecure: bool) -> str:
    parts = url.split("://", 1)
    if len(parts) != 2 or parts[0] not in ("http", "https") or not parts[1].split("/", 1)[0]:
        raise ConfigurationError(f"base URL must be an http(s) URL, not {url!r}")
    if parts[0] == "http" and not allow_insecure and not _is_loopback(parts[1]):
        raise ConfigurationError(
            f"refusing the non-HTTPS base URL {url!r}: bearer tokens would travel in clear. "
            "Use https, a loopback host, or pass allow_insecure=True"
        )
    return url if url.endswith("/") else url + "/"


def _is_loopback(rest: str) -> bool:
    # The host as URL parsers (and so aiohttp) read it: the authority ends at the first
    # '/', '?' or '#', so "evil.test#@127.0.0.1/" is evil.test, not 127.0.0.1.
    try:
        host = urlsplit("//" + rest).hostname or ""
    except ValueError:  # e.g. an unclosed '[' of an IPv6 address
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
