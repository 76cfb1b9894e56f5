"""FakeConduit: the rules of ``_state`` served over real HTTP by aiohttp.web, with
authorization, preconditions, the ``Date`` header, fault injection and counters.

A real socket rather than a mocked transport, so the SDK's whole stack (connection pool,
timeouts, retries on dropped connections) is exercised exactly as against Conduit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs
from aiohttp import web
from multidict import MultiMapping

from ._faults import Fault, FaultInjector, FaultKind
from ._state import (
    ApiError,
    Company,
    Credential,
    Dashboard,
    FakeState,
    Grant,
    Integration,
    IssuedToken,
    TokenKind,
    Workspace,
    new_token,
    not_found,
)
from ._stats import ExpiredTokenUse, FakeStats

if TYPE_CHECKING:
    from ..client import Conduit

__all__ = ["ROUTES", "FakeConduit", "client_environment"]

log = logging.getLogger("conduit_async.testing")

Clock = Callable[[], float]
_Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]

ORG = TokenKind.ORGANIZATION
LINK = TokenKind.LINK
WORKSPACE = TokenKind.WORKSPACE
COMPANY = TokenKind.COMPANY


class _Call(NamedTuple):
    """One authorized request, as the operations see it."""

    grant: Grant
    params: Mapping[str, str]
    query: MultiMapping[str]
    body: object
    now: float


@attrs.frozen
class _Route:
    key: str
    """``"METHOD /pattern/"`` exactly as in the spec; also the fault and stats key."""
    allowed: frozenset[TokenKind]
    operation: Callable[[FakeState, _Call], object]
    """Returns the JSON payload, or None for 204."""
    needs_org_name: frozenset[TokenKind] = frozenset()
    """Token kinds for which this call is workspace-specific (needs the organization
    name configured)."""
    needs_white_label: bool = False
    has_body: bool = False

    @property
    def method(self) -> str:
        return self.key.partition(" ")[0]

    @property
    def path(self) -> str:
        return self.key.partition(" ")[2]


def _id_param(call: _Call, name: str, what: str) -> int:
    raw = call.params[name]
    if not raw.isdigit():
        raise not_found(f"{what} {raw!r}")
    return int(raw)


def _owner(call: _Call) -> int | None:
    """Whose dashboards the caller sees: the workspace of a workspace token, or the
    organization account (None) for the organization token."""
    grant = call.grant
    if grant.kind is not WORKSPACE:
        return None
    assert isinstance(grant.subject, int)
    return grant.subject


def _company_key(call: _Call) -> str:
    subject = call.grant.subject
    assert isinstance(subject, str)
    return subject


def _flag_param(query: MultiMapping[str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


ROUTES: tuple[_Route, ...] = (
    _Route(
        "GET /v2/workspaces/",
        frozenset({ORG}),
        lambda s, c: s.list_workspaces(),
    ),
    _Route(
        "POST /v2/workspaces/",
        frozenset({ORG}),
        lambda s, c: s.create_workspace(c.body),
        needs_org_name=frozenset({ORG}),
        has_body=True,
    ),
    _Route(
        "DELETE /v2/workspaces/{workspace_id}/",
        frozenset({ORG}),
        lambda s, c: s.disable_workspace(_id_param(c, "workspace_id", "workspace")),
        needs_org_name=frozenset({ORG}),
    ),
    _Route(
        "GET /v2/dashboards/",
        frozenset({ORG, WORKSPACE}),
        lambda s, c: s.list_dashboards(_owner(c)),
        needs_org_name=frozenset({WORKSPACE}),
    ),
    _Route(
        "GET /v2/dashboards/{dashboard_id}/share/",
        frozenset({ORG, WORKSPACE}),
        lambda s, c: s.share_url(_id_param(c, "dashboard_id", "dashboard"), _owner(c)),
        needs_org_name=frozenset({WORKSPACE}),
    ),
    _Route(
        "POST /v2/dashboards/{dashboard_id}/clone/",
        frozenset({ORG}),
        lambda s, c: s.clone_dashboard(_id_param(c, "dashboard_id", "dashboard"), c.body),
        needs_org_name=frozenset({ORG}),
        needs_white_label=True,
        has_body=True,
    ),
    _Route(
        "GET /link/company/",
        frozenset({LINK}),
        lambda s, c: s.list_companies(_flag_param(c.query, "include_connections"), c.now),
    ),
    _Route(
        "POST /link/company/",
        frozenset({LINK}),
        lambda s, c: s.create_company(c.body, c.now),
        has_body=True,
    ),
    _Route(
        "GET /link/company/{cid}/",
        frozenset({LINK}),
        lambda s, c: s.get_company(c.params["cid"], c.now),
    ),
    _Route(
        "POST /link/company/{cid}/",
        frozenset({LINK}),
        lambda s, c: s.edit_company(c.params["cid"], c.body, c.now),
        has_body=True,
    ),
    _Route(
        "GET /link/credentials/",
        frozenset({COMPANY}),
        lambda s, c: s.list_credentials(_company_key(c), c.now),
    ),
    _Route(
        "GET /link/credentials/connect/{integration_id}/",
        frozenset({COMPANY}),
        lambda s, c: s.connect_url(_company_key(c), _id_param(c, "integration_id", "integration")),
    ),
    _Route(
        "DELETE /link/credentials/{credential_id}/",
        frozenset({COMPANY}),
        lambda s, c: s.delete_credential(
            _company_key(c), _id_param(c, "credential_id", "credential"), c.now
        ),
    ),
    _Route(
        "GET /link/data_lake/",
        frozenset({COMPANY}),
        lambda s, c: s.data_lake(_company_key(c), c.query, c.now),
    ),
)

_ROUTE_PATTERNS = tuple(
    (re.compile(re.sub(r"\{[^}]+\}", "[^/]+", route.path)), route.method) for route in ROUTES
)

_KIND_NAMES = {
    ORG: "the organization token",
    LINK: "the Link APP token",
    WORKSPACE: "a workspace token",
    COMPANY: "a company token",
}

_STATUS_CODES = {429: "rate_limited"}
"""Error codes of fault statuses; any other status is a ``server_error``."""

_SO_LINGER_RESET = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on with a zero timeout: closing then sends RST instead of FIN."""


_LATEST_TIME = 253_402_300_799
"""9999-12-31T23:59:59Z: the server's clock must stay where dates can be formatted."""

_encode = json.JSONEncoder(separators=(",", ":")).encode
"""Built once: ``json.dumps`` with non-default options makes a new encoder per call."""


def _dumps(payload: object) -> bytes:
    return _encode(payload).encode()


class FakeConduit:
    """An embedded fake Conduit server (spec sections 1-5) on a real local port.

    ``async with FakeConduit() as fake:`` starts it; point the SDK at ``fake.base_url``
    and ``fake.link_base_url`` with ``fake.org_token`` and ``fake.link_token``.

    ``clock`` gives Unix seconds (share a :class:`~conduit_async.testing.ManualClock`
    with the SDK to make time pass instantly); the server's own time is
    ``clock() + clock_offset``, used for ``Date`` headers, ``created_at`` and token
    expiry. ``token_ttl`` is the company token lifetime in seconds. ``seed`` makes random
    faults reproducible; ``fault_rate`` turns on :meth:`FaultInjector.random_mix` on
    every route at that rate (a share of requests, 0 to 1). ``fast=True`` drops the
    per-route/per-status breakdown in ``stats.requests`` (every other counter stays) for
    benchmarks. ``revoke_on_reissue=True`` makes a company's earlier tokens fail with
    401 ``token_revoked`` as soon as it is issued a new one (by create, get, edit or
    list), the strictest reading of the spec, for testing many processes that share
    (or fail to share) a company's token.

    ``clock_offset``, ``token_ttl``, ``revoke_on_reissue``,
    ``organization_name_configured`` and ``white_label_configured`` may be changed at
    any time.

    Besides the API, the server answers ``GET /_fake/stats`` (the counters as JSON),
    ``POST /_fake/stats/reset``, ``GET /_fake/clock`` (``{"now": server time, "offset":
    clock_offset}``) and ``POST /_fake/clock`` with ``{"advance": seconds}``, which adds
    to ``clock_offset`` so that a person or a process outside can make tokens expire
    without waiting.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        token_ttl: float = 600.0,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        org_token: str | None = None,
        link_token: str | None = None,
        clock_offset: float = 0.0,
        organization_name_configured: bool = True,
        white_label_configured: bool = True,
        fast: bool = False,
        fault_rate: float = 0.0,
        revoke_on_reissue: bool = False,
    ) -> None:
        if token_ttl <= 0:
            raise ValueError(f"token_ttl must be positive, not {token_ttl!r}")
        org_token = org_token or new_token("org_")
        link_token = link_token or new_token("link_")
        if org_token == link_token:
            raise ValueError("org_token and link_token must differ")
        self.clock_offset = clock_offset
        """Seconds added to ``clock()`` to get the server's time."""
        self.organization_name_configured = organization_name_configured
        self.white_label_configured = white_label_configured
        self._clock = clock
        self._host = host
        self._port = port
        self._fast = fast
        self._stats = FakeStats()
        self._state = FakeState(
            token_ttl=token_ttl,
            org_token=org_token,
            link_token=link_token,
            on_event=self._stats.record_event,
            revoke_on_reissue=revoke_on_reissue,
        )
        self._faults = FaultInjector([route.key for route in ROUTES], seed)
        if fault_rate:
            self._faults.random_mix(fault_rate)
        self._url: str | None = None
        self._runner: web.AppRunner | None = None
        self._closed = False
        self._stalls: set[asyncio.Future[None]] = set()
        self._date_second = -1
        self._date_text = ""

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and start serving; ``RuntimeError`` if already started."""
        if self._runner is not None or self._closed:
            raise RuntimeError("a FakeConduit can be started once")
        app = web.Application()
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._endpoint(route))
        app.router.add_get("/_fake/stats", self._serve_stats)
        app.router.add_post("/_fake/stats/reset", self._reset_stats)
        app.router.add_get("/_fake/clock", self._serve_clock)
        app.router.add_post("/_fake/clock", self._advance_clock)
        app.router.add_get("/_fake/{kind}/{rest:.*}", self._serve_link_target)
        app.router.add_route("*", "/{rest:.*}", self._no_route)
        # A short shutdown timeout: stalls are released by close() and nothing else
        # runs long, so waiting longer could only hide a bug.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{port}/"
        self._state.root = self._url

    async def close(self) -> None:
        """Stop serving and release the port. Requests still stalled by a latency fault
        are dropped unanswered and unhandled. Safe to call twice."""
        self._closed = True
        for stall in self._stalls:
            if not stall.done():
                stall.set_result(None)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeConduit:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- what clients need -------------------------------------------------------------

    @property
    def url(self) -> str:
        """Root URL with a trailing slash, e.g. ``http://127.0.0.1:40123/``."""
        if self._url is None:
            raise RuntimeError("the FakeConduit is not started")
        return self._url

    @property
    def base_url(self) -> str:
        """The v2 API base, ``{url}v2/``."""
        return self.url + "v2/"

    @property
    def link_base_url(self) -> str:
        """The Link API base, ``{url}link/``."""
        return self.url + "link/"

    @property
    def org_token(self) -> str:
        return self._state.org_token

    @property
    def link_token(self) -> str:
        return self._state.link_token

    @property
    def clock(self) -> Clock:
        """The clock the server was given (without ``clock_offset``)."""
        return self._clock

    def now(self) -> float:
        """The server's time: ``clock() + clock_offset``."""
        return self._clock() + self.clock_offset

    @property
    def token_ttl(self) -> float:
        """Lifetime in seconds of company tokens issued from now on."""
        return self._state.token_ttl

    @token_ttl.setter
    def token_ttl(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"token_ttl must be positive, not {seconds!r}")
        self._state.token_ttl = seconds

    @property
    def revoke_on_reissue(self) -> bool:
        """Whether issuing a company a token revokes its earlier ones (see the class)."""
        return self._state.revoke_on_reissue

    @revoke_on_reissue.setter
    def revoke_on_reissue(self, on: bool) -> None:
        self._state.revoke_on_reissue = on

    def environment(self) -> dict[str, str]:
        """The ``CONDUIT_*`` variables that point a :class:`~conduit_async.Conduit` (or
        the ``conduit-async`` command) at this server: both tokens and both base URLs."""
        return client_environment(
            base_url=self.base_url,
            link_base_url=self.link_base_url,
            org_token=self.org_token,
            link_token=self.link_token,
        )

    def client(self, **options: Any) -> Conduit:
        """A `Conduit` pointed at this server: its tokens and base URLs, and unless
        `options` say otherwise, its clock and a retry policy that sleeps on that clock
        (so a test's `Retry-After` or backoff passes in virtual time when the clock is
        a `ManualClock`). Close it (`async with`) like any client."""
        from .. import Conduit, RetryPolicy

        sleep = getattr(self._clock, "sleep", None)
        options.setdefault("token", self.org_token)
        options.setdefault("link_token", self.link_token)
        options.setdefault("base_url", self.base_url)
        options.setdefault("link_base_url", self.link_base_url)
        options.setdefault("clock", self._clock)
        if sleep is not None:
            options.setdefault("retry", RetryPolicy(sleep=sleep))
        return Conduit(**options)

    @property
    def faults(self) -> FaultInjector:
        return self._faults

    @property
    def stats(self) -> FakeStats:
        return self._stats

    # -- state, for tests --------------------------------------------------------------

    @property
    def companies(self) -> Mapping[str, Company]:
        """Live read-only view, keyed by lower-cased company id."""
        return MappingProxyType(self._state.companies)

    @property
    def workspaces(self) -> Mapping[int, Workspace]:
        """Live read-only view of the enabled workspaces by id."""
        return MappingProxyType(self._state.workspaces)

    @property
    def dashboards(self) -> Mapping[int, Dashboard]:
        """Live read-only view of every dashboard by id (ids 1-3 are the seeded
        organization dashboards)."""
        return MappingProxyType(self._state.dashboards)

    @property
    def integrations(self) -> Mapping[int, Integration]:
        """The integrations every company sees, by id."""
        return MappingProxyType(self._state.integrations)

    def credentials(self, company_id: str) -> list[Credential]:
        """A company's credentials (seeded with one Google Ads login on first look)."""
        return list(self._state.credentials_of(self._company(company_id).key, self.now()).values())

    def add_company(
        self, company_id: str, *, name: str | None = None, page_enabled: bool = True
    ) -> Company:
        """Seed a company as if created earlier (not counted in ``stats``, no token
        issued). ``ValueError`` for an invalid or existing id."""
        try:
            return self._state.add_company(company_id, name, page_enabled, self.now())
        except ApiError as error:
            raise ValueError(error.message) from None

    def add_workspace(self, name: str, *, ext_id: str | None = None) -> Workspace:
        """Seed a workspace (not counted in ``stats``); its token is on the result."""
        return self._state.add_workspace(name, ext_id)

    def add_dashboard(self, name: str, *, workspace: int | None = None) -> Dashboard:
        """Seed a dashboard in the organization account, or in ``workspace``."""
        return self._state.add_dashboard(name, workspace)

    def add_credential(
        self,
        company_id: str,
        integration_id: int,
        *,
        name: str = "user@example.com",
        accounts: list[tuple[str, str]] | None = None,
    ) -> Credential:
        """Connect one more data-source login for a company; ``accounts`` are
        ``(name, native_id)`` pairs."""
        key = self._company(company_id).key
        return self._state.add_credential(key, integration_id, name, accounts or [], self.now())

    def issue_company_token(self, company_id: str) -> IssuedToken:
        """Issue a company token without a request, as GET would (counted in
        ``stats.tokens_issued``)."""
        return self._state.issue_company_token(self._company(company_id).key, self.now())

    def issued_tokens(self) -> Mapping[str, Grant]:
        """Every token the server knows, mapped to what it grants: the organization and
        Link APP tokens, each workspace's token and every company token issued and not
        revoked (expired ones included: they are answered 401 ``token_expired``). A
        live read-only view, for tests that check no token leaked or what a token's
        ``expires_at`` is on the server's side."""
        return MappingProxyType(self._state.tokens)

    def revoke_token(self, token: str) -> None:
        """Make ``token`` fail with 401 from now on. A revoked workspace token is
        replaced by a new one at once (List workspaces shows it), as the spec says a
        revoked workspace token must be looked up again. ``KeyError`` if unknown."""
        self._state.revoke_token(token)

    def _company(self, company_id: str) -> Company:
        company = self._state.companies.get(company_id.lower())
        if company is None:
            raise KeyError(f"no company {company_id!r}")
        return company

    # -- HTTP --------------------------------------------------------------------------

    def _http_date(self, now: float) -> str:
        # Formatting costs more than the rest of a cheap request; one per second will do.
        second = int(now)
        if second != self._date_second:
            self._date_text = formatdate(second, usegmt=True)
            self._date_second = second
        return self._date_text

    def _json(self, status: int, payload: object, now: float) -> web.Response:
        return web.Response(
            body=_dumps(payload),
            status=status,
            content_type="application/json",
            headers={"Date": self._http_date(now)},
        )

    def _error(self, error: ApiError, now: float) -> web.Response:
        return self._json(error.status, error.body(), now)

    def _identify(self, request: web.Request, route_key: str, now: float) -> Grant | ApiError:
        """Who is calling, or the 401 to send. Counts expired company tokens here, so
        every arrival of one is seen whatever happens to the request afterwards."""
        header = request.headers.get("Authorization")
        if header is None:
            return ApiError(401, "missing_token", "send Authorization: Bearer <token>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return ApiError(401, "invalid_token", "send Authorization: Bearer <token>")
        token = token.strip()
        grant = self._state.tokens.get(token)
        if grant is None:
            if token in self._state.revoked:
                self._stats.revoked_token_requests += 1
                return ApiError(
                    401, "token_revoked", "the company token was revoked: a newer one was issued"
                )
            return ApiError(401, "invalid_token", "the token is unknown or was revoked")
        if grant.expires_at is not None and now >= grant.expires_at:
            stats = self._stats
            stats.expired_token_requests += 1
            stats.expired_token_log.append(ExpiredTokenUse(route_key, now))
            return ApiError(401, "token_expired", "the company token has expired")
        return grant

    def _authorize(self, route: _Route, grant: Grant) -> None:
        """403 for a token of the wrong kind, or a precondition not met."""
        kind = grant.kind
        if kind not in route.allowed:
            allowed = " or ".join(sorted(_KIND_NAMES[k] for k in route.allowed))
            raise ApiError(
                403, "forbidden", f"{route.key} needs {allowed}, not {_KIND_NAMES[kind]}"
            )
        if kind in route.needs_org_name and not self.organization_name_configured:
            raise ApiError(
                403,
                "organization_name_not_configured",
                "workspace calls need the organization name set in the Conduit web app",
            )
        if route.needs_white_label and not self.white_label_configured:
            raise ApiError(
                403,
                "white_label_not_configured",
                "cloning a dashboard into a workspace needs White-label configured",
            )

    def _fault_response(self, fault: Fault, now: float) -> web.Response:
        status = fault.status_code or 503
        headers = {"Date": self._http_date(now)}
        retry_after = fault.retry_after
        if isinstance(retry_after, str):
            headers["Retry-After"] = retry_after
        elif retry_after is not None:
            if fault.retry_after_format == "http-date":
                headers["Retry-After"] = formatdate(now + retry_after, usegmt=True)
            else:
                headers["Retry-After"] = f"{retry_after:g}"
        if fault.body is not None:
            content_type = "text/html" if fault.body.lstrip().startswith("<") else "text/plain"
            return web.Response(
                text=fault.body, status=status, content_type=content_type, headers=headers
            )
        code = _STATUS_CODES.get(status, "server_error")
        body = {"code": code, "message": f"injected fault: status {status}"}
        return web.Response(
            body=_dumps(body), status=status, content_type="application/json", headers=headers
        )

    async def _stall(self, seconds: float) -> bool:
        """Wait ``seconds`` of real time; False if the server closed meanwhile."""
        loop = asyncio.get_running_loop()
        stall: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, stall)
        self._stalls.add(stall)
        try:
            await stall
        finally:
            timer.cancel()
            self._stalls.discard(stall)
        return not self._closed

    def _endpoint(self, route: _Route) -> _Endpoint:
        key = route.key
        operation = route.operation
        has_body = route.has_body
        state = self._state
        stats = self._stats
        faults = self._faults
        fast = self._fast
        clock = self._clock

        async def endpoint(request: web.Request) -> web.StreamResponse:
            stats.requests_total += 1
            fault = faults.next_fault(key) if faults.active else None
            if fault is not None:
                injected = stats.faults_injected
                injected[fault.label] = injected.get(fault.label, 0) + 1
            raw = b""
            if has_body and (fault is None or fault.kind is not FaultKind.RESET):
                # Read before any stall: a server has the request before it is slow to
                # answer, and aiohttp refuses an unread body once the client has left.
                try:
                    raw = await request.read()
                except ConnectionError:
                    return _drop(request, reset=False)
            if (
                fault is not None
                and fault.kind is FaultKind.LATENCY
                and not await self._stall(fault.seconds)
            ):
                return _drop(request, reset=False)
            now = clock() + self.clock_offset
            identity = self._identify(request, key, now)
            if fault is not None:
                if fault.kind is FaultKind.RESET:
                    if not fast:
                        stats.record(key, "reset")
                    return _drop(request, reset=True)
                if fault.kind is FaultKind.STATUS:
                    response = self._fault_response(fault, now)
                    if not fast:
                        stats.record(key, str(response.status))
                    return response
            try:
                if isinstance(identity, ApiError):
                    raise identity
                self._authorize(route, identity)
                body: object = None
                if has_body:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise ApiError(
                            400, "invalid_json", "the request body is not valid JSON"
                        ) from None
                payload = operation(
                    state, _Call(identity, request.match_info, request.query, body, now)
                )
                if payload is None:
                    response = web.Response(status=204, headers={"Date": self._http_date(now)})
                else:
                    response = self._json(200, payload, now)
            except ApiError as error:
                response = self._error(error, now)
            if fault is not None and fault.kind is FaultKind.LOST:
                if not fast:
                    stats.record(key, "lost")
                return _drop(request, reset=False)
            if not fast:
                stats.record(key, str(response.status))
            return response

        return endpoint

    async def _no_route(self, request: web.Request) -> web.StreamResponse:
        now = self.now()
        path = request.path
        allowed = sorted({method for pattern, method in _ROUTE_PATTERNS if pattern.fullmatch(path)})
        if allowed:
            response = self._error(
                ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {path}"),
                now,
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return self._error(not_found(f"route {request.method} {path}"), now)

    async def _serve_stats(self, request: web.Request) -> web.StreamResponse:
        return self._json(200, self._stats.to_json(), self.now())

    async def _reset_stats(self, request: web.Request) -> web.StreamResponse:
        self._stats.reset()
        return web.Response(status=204, headers={"Date": self._http_date(self.now())})

    def _clock_json(self) -> dict[str, float]:
        return {"now": self.now(), "offset": self.clock_offset}

    async def _serve_clock(self, request: web.Request) -> web.StreamResponse:
        return self._json(200, self._clock_json(), self.now())

    async def _advance_clock(self, request: web.Request) -> web.StreamResponse:
        """``{"advance": seconds}``: move the server's time forward (never back)."""
        try:
            try:
                body = json.loads(await request.read())
            except ValueError:
                raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
            seconds = _advance_seconds(body)
            if self.now() + seconds > _LATEST_TIME:
                raise ApiError(
                    400, "invalid_request", "'advance' would take the clock past the year 9999"
                )
        except ApiError as error:
            return self._error(error, self.now())
        self.clock_offset += seconds
        return self._json(200, self._clock_json(), self.now())

    async def _serve_link_target(self, request: web.Request) -> web.StreamResponse:
        """Answer the URLs the API hands out (company pages, share and connect links,
        data-lake CSVs), so a client that follows one gets a page rather than a 404."""
        headers = {"Date": self._http_date(self.now())}
        kind = request.match_info["kind"]
        if kind == "data":
            day = request.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".csv")
            csv = f"date,impressions,clicks,cost\n{day},1000,42,12.50\n"
            return web.Response(text=csv, content_type="text/csv", headers=headers)
        if kind in ("page", "share", "connect", "dashboard"):
            html = f"<!doctype html><title>Fake Conduit {kind}</title><p>{kind}</p>\n"
            return web.Response(text=html, content_type="text/html", headers=headers)
        return await self._no_route(request)


def client_environment(
    *, base_url: str, link_base_url: str, org_token: str, link_token: str
) -> dict[str, str]:
    """The environment variables the SDK reads its tokens and base URLs from."""
    return {
        "CONDUIT_TOKEN": org_token,
        "CONDUIT_LINK_TOKEN": link_token,
        "CONDUIT_BASE_URL": base_url,
        "CONDUIT_LINK_BASE_URL": link_base_url,
    }


def _advance_seconds(body: object) -> float:
    """The body of ``POST /_fake/clock``, checked: exactly ``{"advance": <seconds>}``
    with a finite, non-negative number."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", 'send a JSON object: {"advance": <seconds>}')
    unknown = sorted(set(body) - {"advance"})
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field {unknown[0]!r}; expected 'advance'")
    seconds = body.get("advance")
    if seconds is None:
        raise ApiError(400, "invalid_request", "'advance' is required (seconds)")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ApiError(400, "invalid_request", "'advance' must be a number of seconds")
    if seconds < 0 or seconds > _LATEST_TIME or not math.isfinite(seconds):
        raise ApiError(
            400, "invalid_request", "'advance' must be a finite, non-negative number of seconds"
        )
    return float(seconds)


def _resolve(stall: asyncio.Future[None]) -> None:
    if not stall.done():
        stall.set_result(None)


def _drop(request: web.Request, *, reset: bool) -> web.StreamResponse:
    """Close the connection without answering. aiohttp then fails to write the response
    returned here, and takes that quietly as a client that went away."""
    transport = request.transport
    if transport is not None:
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _SO_LINGER_RESET)
                except OSError:
                    log.debug("could not arm SO_LINGER for a reset; closing instead")
        transport.abort()
    return web.Response(status=500)
