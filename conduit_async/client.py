"""`Conduit`: configuration, lifecycle, and the resource attributes.

One `Conduit` per application: create it at start-up (or in `async with`),
share it between all handlers and tasks, close it at shutdown. It holds one
aiohttp session and one token broker.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import random
import re
import time
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import attrs
from yarl import URL

from . import _json, _validate
from ._auth import Auth, StaticAuth
from ._retry import RetryPolicy
from ._session import Lookup, Session
from ._telemetry import telemetry as telemetry_for
from .errors import ConfigurationError, ValidationError
from .models import Workspace
from .resources.companies import Companies, CompanyView
from .resources.dashboards import Dashboards
from .resources.workspaces import Workspaces, WorkspaceView
from .routes import Reply, Route
from .stats import Stats
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

T = TypeVar("T")


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
    `trace_configs` go to the aiohttp session the client makes. `telemetry`:
    OpenTelemetry spans per call and counters of token fetches (`pip install
    "conduit-async[otel]"`); by default on when the application has set a
    global tracer provider before creating the client; spans go to
    `tracer_provider` when given.

    A client belongs to one event loop at a time. One made at module level
    and used in `asyncio.run(...)` is cleaned up when that loop ends, and
    works again in a later `asyncio.run`.
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
        trace_configs: list[aiohttp.TraceConfig] | None = None,
        telemetry: bool | None = None,
        tracer_provider: Any = None,
    ) -> None:
        env = os.environ
        token = token if token is not None else env.get("CONDUIT_TOKEN") or None
        link_token = link_token if link_token is not None else env.get("CONDUIT_LINK_TOKEN") or None
        _check_token(token, "token (CONDUIT_TOKEN)")
        _check_token(link_token, "link_token (CONDUIT_LINK_TOKEN)")
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
            max_connections=max_connections,
            clock=self.clock,
            max_response_bytes=max_response_bytes,
            http=session,
            trace_configs=list(trace_configs) if trace_configs else None,
            secrets=tuple(t for t in (token, link_token) if t),
            telemetry=telemetry_for(telemetry, tracer_provider),
        )
        self._policy: RetryPolicy | None = None
        self.tokens = TokenBroker(
            fetch_company=self._fetch_company_lease,
            list_workspaces=self._list_workspaces,
            clock=self.clock,
            store=choose_token_store(token_store, token_cache_size),
            rng=random.Random(seed),
        )
        self.tokens.bind(
            link_token=link_token, org_token=token, pause=self._session, request_timeout=timeout
        )
        self._views_max = token_cache_size
        self._bind()
        if self._session.telemetry is not None:
            self._session.telemetry.count(
                self.tokens,
                {
                    "conduit.token.fetches": lambda b: b.stats.company_fetches,
                    "conduit.token.background_refreshes": lambda b: b.stats.background_refreshes,
                    "conduit.token.refresh_failures": lambda b: b.stats.refresh_failures,
                    "conduit.workspace.lookups": lambda b: b.stats.workspace_lookups,
                },
            )

    def _bind(self) -> None:
        self._bases = {"v2": self.base_url, "link": self.link_base_url}
        self._auths: dict[str, Auth] = {
            "organization": self._org_auth,
            "link_app": self._link_auth,
        }
        self.workspaces = Workspaces(self)
        self.dashboards = Dashboards(self, self._org_auth)
        self.companies = Companies(self)
        # The views `company()` made, by id: a web app makes one per call, for the same
        # tenants all day. Each client (a `with_options` one too) keeps its own.
        self._views: dict[str, CompanyView] = {}

    def with_options(self, *, max_wait: float | None) -> Conduit:
        """This client with other call options, sharing its session and token cache.

        `max_wait`: the seconds one call may spend waiting for retries and
        429 pauses before it fails (a `RateLimitError` with `retry_after`);
        a pause longer than that, imposed by another call's 429, does not
        hold it back. For a request a person is waiting on, e.g.
        `await conduit.with_options(max_wait=0.5).company(t).connect_url(i)`.
        Cheap to make per call; close only the client it came from.
        """
        view = copy.copy(self)
        view._policy = attrs.evolve(self.retry, max_wait=max_wait)
        view._bind()
        return view

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
        """A view of one company whose calls use its own token, refreshed before it expires.

        Views are immutable and kept (as many as the token cache holds), so the same id
        gives the same view: `conduit.company(cid)` on every call costs a dict lookup.
        """
        views = self._views
        try:
            view = views.get(company_id)
        except TypeError:  # unhashable: not an id, as the check below says
            view = None
        if view is None:
            if len(views) >= self._views_max:
                views.clear()  # rebuilding a view is cheap; forgetting them all is simple
            view = views[company_id] = CompanyView(self, _validate.company_id(company_id))
        return view

    @property
    def max_connections(self) -> int:
        """The connector's size: requests beyond it wait for a free connection."""
        return self._session.connection_limit

    @property
    def retry(self) -> RetryPolicy:
        """How requests are retried; bulk provisioning spaces its row retries by it too."""
        return self._policy or self._session.retry

    @property
    def paused_for(self) -> float:
        """Seconds left of the pause a 429 imposed on every request (0 when not paused)."""
        return self._session.paused_for

    def stats(self) -> Stats:
        """A snapshot of what this client has done: requests by endpoint and status,
        retries by cause, 429 pauses, and the token broker's fetches, refreshes and
        cache hits (see `Stats`)."""
        counts = self._session.counts
        requests: dict[str, dict[str, int]] = {}
        for (endpoint, status), n in counts.requests.items():
            requests.setdefault(endpoint, {})[str(status)] = n
        broker = self.tokens.stats
        return Stats(
            requests=requests,
            retries=dict(counts.retries),
            pauses=counts.pauses,
            paused_seconds=counts.paused_seconds,
            token_fetches=broker.company_fetches,
            background_refreshes=broker.background_refreshes,
            refresh_failures=broker.refresh_failures,
            workspace_lookups=broker.workspace_lookups,
            cache_hits=broker.cache_hits,
            cache_misses=broker.cache_misses,
            fetches_in_flight=self.tokens.inflight,
        )

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
        """Connect a shared token store (Redis) now. Credentials it refuses are a
        `ConfigurationError` here, at startup (the client is closed again); a Redis
        that is down is not: the outage is logged once and the client carries on
        without it, exactly as when Redis goes down later, until it is back."""
        try:
            await self.tokens.connect(required=False)
        except BaseException:
            await self.close()
            raise
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

    # -- the request verb the resources are built on ----------------------------------

    def request(
        self,
        route: Route[T],
        *,
        auth: Auth | None = None,
        json: object = None,
        params: Mapping[str, str] | None = None,
        lookup: Lookup[T] | None = None,
        **path: object,
    ) -> Awaitable[Reply[T]]:
        """Send one call of `route` (see `conduit_async.routes`): retried, mapped to
        typed errors, its answer parsed.

        `path` fills the route's placeholders (already validated by the
        caller). `auth` is required for routes of a workspace or a company;
        the configured tokens serve the others. `json` is the body (None: no
        body). `lookup(sent)` finds what a lost create made, given the body it sent.
        """
        url = self._bases[route.api] + (route.template % path if path else route.path)
        return self._session.request(
            route,
            url,
            auth or self._auths[route.scope],
            None if json is None else _json.dumps(json),
            params,
            lookup,
            self._policy,
        )

    # -- wiring for the broker ---------------------------------------------------------

    async def _fetch_company_lease(self, company_id: str) -> TokenLease:
        return await self.companies.fetch_lease(company_id)

    async def _list_workspaces(self) -> list[Workspace]:
        return await self.workspaces.list()


def _check_token(value: str | None, name: str) -> None:
    if value is not None and (not value.isprintable() or not value.isascii()):
        # A CR or LF would split the Authorization header; never echo the value.
        raise ConfigurationError(
            f"{name} holds control or non-ASCII characters (a stray newline?); "
            "it cannot go into an HTTP header"
        )


def _base_url(url: str, allow_insecure: bool) -> str:
    # A URL with an '@' anywhere may hold a password: such a URL is never echoed.
    shown = repr(url) if "@" not in url else "(not shown: it may hold a password)"
    parts = url.split("://", 1)
    if len(parts) == 2 and "@" in re.split(r"[/?#]", parts[1], maxsplit=1)[0]:
        raise ConfigurationError(
            "a base URL must not hold a user name or password (user:password@host); "
            "the API authenticates with bearer tokens"
        )
    if len(parts) != 2 or parts[0] not in ("http", "https") or not parts[1].split("/", 1)[0]:
        raise ConfigurationError(f"base URL must be an http(s) URL, not {shown}")
    try:
        parsed = URL(url)
        readable = bool(parsed.host) and parsed.port is not None
    except (ValueError, TypeError):
        readable = False
    if not readable:
        raise ConfigurationError(f"base URL {shown} cannot be read: check its host and port")
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
