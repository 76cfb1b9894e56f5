"""The async session: the one place bytes move.

It owns (or borrows) one `aiohttp.ClientSession`, puts on each request the
bearer token its `Auth` gives, and carries out what `_retry.decide` answers
after each attempt: retry, pause, refresh the token, reconcile, or raise. It
maps failures to the error hierarchy and knows nothing of workspaces or
companies beyond the `Route` it is given.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, NoReturn, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp
import attrs
from aiohttp import hdrs
from yarl import URL

from . import _json
from ._auth import Auth
from ._retry import (
    Attempt,
    Done,
    Pause,
    Raise,
    Reconcile,
    RefreshToken,
    Retry,
    RetryPolicy,
    decide,
    parse_retry_after,
)
from ._telemetry import CallRecord, Telemetry
from .errors import (
    APIStatusError,
    ClientClosedError,
    ConduitError,
    ConduitTimeoutError,
    ConfigurationError,
    OutcomeUnknownError,
    RedirectError,
    ResponseFormatError,
    TransportError,
    error_for_status,
)
from .routes import Reply, Route
from .tokens import Clock

__all__ = ["Lookup", "Session", "redact"]

log = logging.getLogger("conduit_async")

T = TypeVar("T")

#: Looks for what a lost attempt of a create made, given the body that attempt sent:
#: its reply, or None if there is none. (Given the body, a resource's lookup can be one
#: bound method, made once: a create allocates nothing for a lookup it rarely needs.)
Lookup = Callable[[bytes | None], Awaitable["Reply[T] | None"]]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
# A token field as JSON writes it, or as str() of a parsed dict does (a `message` that is
# an object is shown that way): "api_token": "..." or 'token': '...'.
_TOKEN_FIELD = re.compile(
    r"""((?:"[A-Za-z_]*token"|'[A-Za-z_]*token')\s*:\s*)(?:"[^"]*"|'[^']*')""", re.IGNORECASE
)
# An Authorization header echoed back by a broken proxy or a malformed response.
_BEARER = re.compile(r"(Bearer\s+)[^\s'\"\\,;]+", re.IGNORECASE)
_ERROR_BODY_LIMIT = 64 * 1024


@attrs.define(eq=False)
class _Counts:
    """What the session has done, for `Conduit.stats()`."""

    # Plain dicts: a `Counter` increment costs twice a dict's, on every request.
    requests: dict[tuple[str, int | str], int] = attrs.field(factory=dict)
    retries: dict[str, int] = attrs.field(factory=dict)
    pauses: int = 0
    paused_seconds: float = 0.0

    def request(self, endpoint: str, status: int | str) -> None:
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def retry(self, cause: str) -> None:
        self.retries[cause] = self.retries.get(cause, 0) + 1


class _Send(Protocol):
    def __call__(
        self,
        route: Route[T],
        url: str,
        auth: Auth,
        body: bytes | None,
        params: Mapping[str, str] | None,
        lookup: Lookup[T] | None,
        policy: RetryPolicy | None,
    ) -> Coroutine[Any, Any, Reply[T]]: ...


@attrs.define(eq=False)
class Session:
    """Sends requests over one aiohttp session, created lazily inside the running loop.

    `http`, when given, is the caller's session: used as it is, never closed
    here. Otherwise one is made on first use with a connector of
    `max_connections`, and closed by `close()` or, if the event loop that
    made it ends first (`asyncio.run` returning), by the loop's shutdown; the
    next use in a new loop then makes a new one.
    """

    retry: RetryPolicy
    timeout: float
    max_connections: int
    clock: Clock = time.time
    max_response_bytes: int = 16 * 1024 * 1024
    user_agent: str = "conduit-async"
    http: aiohttp.ClientSession | None = None
    trace_configs: list[aiohttp.TraceConfig] | None = None
    #: Values never to show in an error or log, whatever echoes them (the configured tokens).
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    #: Told of every pause this session imposes (a shared token store publishes it).
    on_pause: Callable[[float], None] | None = attrs.field(default=None, repr=False)
    #: Spans per call, when OpenTelemetry is on.
    telemetry: Telemetry | None = None

    _owns_http: bool = attrs.field(init=False, default=False)
    _closed: bool = attrs.field(init=False, default=False)
    #: The loop the session works in: set on first use, cleared when that loop ends.
    _loop: asyncio.AbstractEventLoop | None = attrs.field(init=False, default=None)
    _closer: AsyncGenerator[None, None] | None = attrs.field(init=False, default=None)
    #: Retry waits under way: `close()` cuts them short.
    _sleepers: set[asyncio.Future[None]] = attrs.field(init=False, factory=set)
    _paused_until: float = attrs.field(init=False, default=0.0)
    _timeout: aiohttp.ClientTimeout = attrs.field(init=False)
    #: The headers of a request without a body and of one with JSON, by token: built once
    #: per token, not per request (aiohttp copies them; and a dict held over a round trip
    #: is one more object in flight for the garbage collector).
    _headers: tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]] = attrs.field(
        init=False, factory=lambda: ({}, {}), repr=False
    )
    counts: _Counts = attrs.field(init=False, factory=_Counts)

    #: Sends one call of `route` to `url`, carrying out `decide`'s answer after each
    #: attempt: `request(route, url, auth, body, params, lookup, policy)`. `lookup` finds
    #: what a lost attempt of a create made (routes with `on_unknown="lookup"`); `policy`
    #: overrides the session's for this call. Bound at construction to `_request`, or to
    #: `_traced` with telemetry: a call is one coroutine, with no frame in front of it.
    request: _Send = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.request = self._request if self.telemetry is None else self._traced
        # Given on every request, so that a borrowed session uses it too (cheaper for
        # aiohttp than `**options`, about as cheap as leaving it out).
        self._timeout = aiohttp.ClientTimeout(total=self.timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def requests_sent(self) -> int:
        return sum(self.counts.requests.values())

    @property
    def connection_limit(self) -> int:
        """How many connections requests can use at once: a borrowed session's
        connector decides, otherwise `max_connections` (0 means no limit)."""
        if self.http is not None and not self._owns_http:
            return self.http.connector.limit if self.http.connector else 0
        return self.max_connections

    async def _client(self) -> aiohttp.ClientSession:
        """The aiohttp session to send with, made (or made again) in the running loop."""
        if self._closed:
            raise ClientClosedError("this Conduit client is closed; create a new one")
        loop = asyncio.get_running_loop()
        http = self.http
        if self._loop is not None and self._loop is not loop:
            if self._owns_http and http is not None:
                # The loop that made it ended without the shutdown that closes it.
                raise ConfigurationError(
                    "this Conduit client's session belongs to an event loop that has ended; "
                    "create one Conduit client per event loop (or close it before the loop ends)"
                )
            if not self._owns_http:
                raise ConfigurationError(
                    "the aiohttp session given to Conduit belongs to another event loop; "
                    "create the session and the Conduit client inside the loop that uses them"
                )
        if http is None:
            http = await self._open()
        elif http.closed:
            raise ClientClosedError("the aiohttp session given to Conduit has been closed")
        self._loop = loop
        return http

    async def _open(self) -> aiohttp.ClientSession:
        # aiohttp binds a session to the running loop: made here, on first use, never at
        # construction time (which may happen outside any loop).
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300
        )
        http = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            trace_configs=self.trace_configs,
        )
        # aiohttp resends an idempotent request once, silently, when a reused connection
        # drops. The session must know of every resend (a DELETE resent after its lost
        # first attempt was applied answers 404), so it does all of them itself.
        http._retry_connection = False
        self.http = http
        self._owns_http = True
        # An async generator, started and left suspended, is finalized by the loop's
        # shutdown (`asyncio.run` calls `shutdown_asyncgens` while the loop still runs):
        # its `finally` closes the session cleanly when the loop ends before `close()`,
        # and a client made at module level works again in the next `asyncio.run`.
        self._closer = self._close_with_loop(http)
        await self._closer.__anext__()
        return http

    async def _close_with_loop(self, http: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self.http is http:
                self.http = None
                self._loop = None
            await http.close()

    async def close(self) -> None:
        """Close the aiohttp session if this client created it. Safe to call twice.

        Requests under way end with `ClientClosedError`; so do retries waiting
        for their turn.
        """
        self._closed = True
        for sleeper in list(self._sleepers):
            sleeper.cancel()
        http = self.http
        closer, self._closer = self._closer, None
        if closer is not None:
            if self._loop is not None and self._loop is not asyncio.get_running_loop():
                return  # the loop that made the session is gone; it closed the session then
            await closer.aclose()
        if self._owns_http and http is not None and not http.closed:
            await http.close()

    @property
    def paused_for(self) -> float:
        """Seconds left of a shared pause requested by a 429 (0 when not paused)."""
        return max(0.0, self._paused_until - self.clock()) if self._paused_until else 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request of this session for `seconds`: a 429 slows all workers
        (and, through `on_pause`, every process sharing the token store)."""
        self.hold(seconds)
        if self.on_pause is not None:
            self.on_pause(seconds)

    def hold(self, seconds: float) -> None:
        """Hold every request for `seconds` without telling `on_pause` (a pause another
        process shared)."""
        until = self.clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self.counts.pauses += 1
            self.counts.paused_seconds += seconds

    async def _sleep(self, seconds: float, policy: RetryPolicy) -> None:
        """The policy's sleep, cut short by `close()` (which then raises `ClientClosedError`)."""
        sleeper = asyncio.ensure_future(policy.sleep(seconds))
        self._sleepers.add(sleeper)
        try:
            await sleeper
        except asyncio.CancelledError:
            if self._closed and sleeper.cancelled() and not _cancelling():
                raise ClientClosedError(
                    "this Conduit client was closed while a request waited to retry"
                ) from None
            raise
        finally:
            self._sleepers.discard(sleeper)
        if self._closed:
            raise ClientClosedError("this Conduit client was closed while a request waited")

    async def _traced(
        self,
        route: Route[T],
        url: str,
        auth: Auth,
        body: bytes | None,
        params: Mapping[str, str] | None,
        lookup: Lookup[T] | None,
        policy: RetryPolicy | None,
    ) -> Reply[T]:
        telemetry = self.telemetry
        assert telemetry is not None
        record = CallRecord()
        with telemetry.span(route) as span:
            try:
                reply = await self._request(route, url, auth, body, params, lookup, policy, record)
            except BaseException as exc:
                telemetry.finish(span, record, exc)
                raise
            telemetry.finish(span, record, None)
            return reply

    async def _request(
        self,
        route: Route[T],
        url: str,
        auth: Auth,
        body: bytes | None,
        params: Mapping[str, str] | None,
        lookup: Lookup[T] | None,
        policy: RetryPolicy | None,
        record: CallRecord | None = None,
    ) -> Reply[T]:
        client = self.http
        if client is None or self._closed or self._loop is not asyncio.get_running_loop():
            client = await self._client()
        policy = policy or self.retry
        method = route.method
        number = 0
        unknown = False
        token_refreshed = False
        waited = 0.0
        while True:
            if self._paused_until:
                wait = self._paused_until - self.clock()
                # A call with a `max_wait` too short for the pause goes ahead at once: a
                # person is waiting, and if the server refuses it too, it fails fast then.
                if wait > 0 and (policy.max_wait is None or waited + wait <= policy.max_wait):
                    await self._sleep(wait, policy)
                    waited += wait
            token = auth.cached() or await self._token(auth, route)
            number += 1
            if record is not None:
                record.attempts += 1
            sent_at = self.clock() if route.issues_token else 0.0
            # One attempt, inline: a coroutine of its own would cost a frame per call and a
            # pass through it per suspension (measured: 2k to 5k instructions a call).
            has_body = body is not None
            known = self._headers[has_body]
            request_headers = known.get(token)
            if request_headers is None:
                if len(known) >= _HEADER_SETS:
                    known.clear()
                request_headers = known[token] = _auth_headers(token, has_body)
            target = url
            hops = 0
            failure: TransportError | None = None
            data: Any
            try:
                while True:
                    if params is None and self._owns_http:
                        # Only the options this request needs: every keyword costs aiohttp
                        # work per request, and the session it made has this timeout.
                        resp = await client.request(
                            method,
                            target,
                            data=body,
                            headers=request_headers,
                            allow_redirects=False,
                        )
                    else:
                        resp = await client.request(
                            method,
                            target,
                            data=body,
                            params=params,
                            headers=request_headers,
                            allow_redirects=False,
                            timeout=self._timeout,
                        )
                    try:
                        status = resp.status
                        headers = resp.headers
                        if 200 <= status < 300:
                            if method == "DELETE":
                                # A DELETE documents no body: whatever a 2xx carries is done.
                                data = None
                                break
                            # The usual case is read here, with no coroutine of its own.
                            # (aiohttp's parser has checked the header is a number.)
                            length = headers.get(hdrs.CONTENT_LENGTH)
                            if (
                                length is not None
                                and int(length) <= self.max_response_bytes
                                and (hdrs.CONTENT_ENCODING not in headers or _plain(resp))
                            ):
                                data = _decode(await resp.read(), route)
                            else:
                                data = _decode(await self._read_limited(resp, route), route)
                            break
                        location = headers.get(hdrs.LOCATION) if status in _REDIRECTS else None
                        if not location:
                            data = await _excerpt(resp)
                            break
                    finally:
                        resp.release()
                    hops += 1
                    if hops > _MAX_REDIRECTS:
                        raise RedirectError(
                            status=status,
                            method=method,
                            path=urlsplit(target).path,
                            message=f"more than {_MAX_REDIRECTS} redirects",
                        )
                    target = _follow(target, location, status, method)
            except (ConduitError, asyncio.CancelledError):
                if self._closed and not _cancelling():
                    _raise(_closed_error(route))
                raise
            except (
                asyncio.TimeoutError,
                aiohttp.ClientError,
                OSError,
                ValueError,
                RuntimeError,
            ) as exc:
                failure = self._transport_failure(route, exc, token)
            if failure is not None:
                error: ConduitError = failure
                attempt = Attempt(
                    number, None, failure.sent, None, unknown, token_refreshed, waited
                )
                self.counts.request(route.endpoint, "transport")
            else:
                if record is not None:
                    record.status = status
                if 200 <= status < 300:
                    self.counts.request(route.endpoint, status)
                    return Reply(route.parse(data, route.endpoint), sent_at, headers.get(hdrs.DATE))
                retry_after = None
                if status == 429 or status == 503:
                    retry_after = parse_retry_after(headers.get(hdrs.RETRY_AFTER), self.clock())
                error = _error(route, status, data, url, self._secrets(token), retry_after)
                attempt = Attempt(
                    number, status, True, retry_after, unknown, token_refreshed, waited
                )
                self.counts.request(route.endpoint, status)

            decision = decide(
                attempt,
                policy,
                method=route.method,
                idempotent=route.idempotent,
                can_reconcile=lookup is not None,
            )
            if _maybe_applied(attempt):
                unknown = True  # from now on, this request may already have been applied
            if isinstance(decision, Reconcile):
                found = await self._reconcile(route, lookup, body, error, policy)
                if found is not None:
                    return found
                decision = decision.then
            if isinstance(decision, Done):  # a DELETE whose lost attempt did it
                return Reply(route.parse(None, route.endpoint), sent_at, None)
            if isinstance(decision, RefreshToken):
                if await auth.invalidate(token):
                    token_refreshed = True
                    number -= 1  # a token refresh is not a retry of the request
                    self.counts.retry("token")
                    continue
                _raise(error)
            if isinstance(decision, Raise):
                if attempt.status == 429 and attempt.retry_after:
                    # This call gives up (max_wait), but the server asked for a pause.
                    self.pause(min(attempt.retry_after, policy.max_retry_after))
                if decision.unknown:
                    if route.settles and route.on_unknown == "raise":
                        # Whoever looks next (a provisioning retry) must see its fate.
                        await self._settle(policy)
                    _raise(OutcomeUnknownError(route.endpoint, error))
                _raise(error)
            if isinstance(decision, Pause):
                self.pause(decision.delay)
                cause = "rate_limit"
            else:
                assert isinstance(decision, Retry)
                await self._sleep(decision.delay, policy)
                waited += decision.delay
                cause = "transport" if attempt.status is None else str(attempt.status)
            self.counts.retry(cause)
            log.debug("%s: %s; retrying (attempt %d)", route.endpoint, error, number)

    async def _token(self, auth: Auth, route: Route[Any]) -> str:
        try:
            return await auth.token()
        except TransportError as exc:
            # Name the call the user made, not the token fetch that served it.
            raise TransportError(
                route.endpoint, f"could not get a token for this call: {exc.detail}", sent=False
            ) from None

    async def _reconcile(
        self,
        route: Route[T],
        lookup: Lookup[T] | None,
        body: bytes | None,
        cause: ConduitError,
        policy: RetryPolicy,
    ) -> Reply[T] | None:
        """Look for what a lost attempt made; once more after it settled, if it may still land."""
        assert lookup is not None
        try:
            found = await lookup(body)
            if found is None and route.settles:
                await self._settle(policy)
                found = await lookup(body)
        except ClientClosedError:
            raise
        except ConduitError as exc:
            raise OutcomeUnknownError(route.endpoint, cause) from exc
        return found

    async def _settle(self, policy: RetryPolicy) -> None:
        delay = policy.settle_delay if policy.settle_delay is not None else self.timeout
        await self._sleep(delay, policy)

    def _secrets(self, token: str) -> tuple[str, ...]:
        return (token, *self.secrets)

    def _transport_failure(self, route: Route[Any], exc: Exception, token: str) -> TransportError:
        """What an attempt that got no HTTP answer failed with, as a `TransportError` whose
        message holds no token. Only a scrubbed summary of the cause is kept, never the
        cause itself: a malformed response can echo the request, Authorization header
        and all (aiohttp's exceptions carry it in `request_info`)."""
        if isinstance(exc, asyncio.TimeoutError):
            connect_only = isinstance(exc, aiohttp.ConnectionTimeoutError)
            return ConduitTimeoutError(
                route.endpoint, f"timed out after {self.timeout:g} s", sent=not connect_only
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            return TransportError(
                route.endpoint, self._scrub(f"cannot connect: {exc.os_error}", token), sent=False
            )
        if self._closed:
            _raise(_closed_error(route))
        return TransportError(route.endpoint, self._scrub(f"{type(exc).__name__}: {exc}", token))

    def _scrub(self, text: str, token: str) -> str:
        return redact(_BEARER.sub(r"\1<redacted>", text), *self._secrets(token))

    async def _read_limited(self, resp: aiohttp.ClientResponse, route: Route[Any]) -> bytes:
        """The body, refusing to hold more than `max_response_bytes` in memory: a compressed
        one is counted as it inflates (a 50 KB gzip can inflate to gigabytes)."""
        limit = self.max_response_bytes
        length = resp.content_length
        if length is not None and length > limit:
            raise ResponseFormatError(route.endpoint, f"body of {length} bytes is over {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise ResponseFormatError(route.endpoint, f"body is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


#: Tokens whose headers a session keeps, for each kind of request (then it starts over).
_HEADER_SETS = 1024


def _auth_headers(token: str, has_body: bool) -> dict[str, str]:
    headers: dict[str, str] = {hdrs.AUTHORIZATION: "Bearer " + token}
    if has_body:  # always JSON
        headers[hdrs.CONTENT_TYPE] = "application/json"
    return headers


def _decode(raw: bytes, route: Route[Any]) -> Any:
    """A 2xx body as JSON (None when empty), or `ResponseFormatError`."""
    if not raw or raw.isspace():  # (not `strip()`, which copies the body)
        return None
    try:
        return _json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json decodes
        # The body itself is left out: a truncated company response holds a token.
        raise ResponseFormatError(
            route.endpoint, f"body is not valid JSON ({len(raw)} bytes)"
        ) from None


def _follow(url: str, location: str, status: int, method: str) -> str:
    """Where a redirect leads, if following it is safe; else `RedirectError`."""
    refusal = None
    try:
        target = urljoin(url, location)
        parts = URL(target)
        origin = _origin(parts)
        if parts.user is not None or parts.password is not None:
            refusal = "refused to follow a redirect to a URL with credentials in it"
        elif origin != _origin(URL(url)):
            # Following would hand the bearer token to another host.
            refusal = (
                f"refused to follow a redirect to another origin ({origin[0]}://{origin[1]}"
                f"{'' if origin[2] is None else ':' + str(origin[2])}): "
                "the Authorization header would leak"
            )
        elif status in (301, 302, 303) and method != "GET":
            refusal = f"refused to follow a redirect that would turn a {method} into a GET"
    except ValueError:
        refusal = "refused to follow a redirect to a malformed URL"
    if refusal is not None:
        raise RedirectError(status=status, method=method, path=urlsplit(url).path, message=refusal)
    return target


def _origin(url: URL) -> tuple[str, str, int | None]:
    return url.scheme, (url.host or "").lower(), url.port


def _raise(error: ConduitError) -> NoReturn:
    """Raise `error` with no implicit `__context__`: Python would chain whatever exception
    is being handled where it is raised, and when a task is resumed inside an `except`
    clause (asyncio's pure-Python task does that) that can be aiohttp's exception, whose
    request_info carries the Authorization header."""
    try:
        raise error
    except ConduitError:
        error.__context__ = None
        raise


def _maybe_applied(attempt: Attempt) -> bool:
    """Whether the server may have acted on an attempt that failed."""
    status = attempt.status
    if status is None:
        return attempt.sent
    return status >= 500 or status == 408


def _cancelling() -> bool:
    """Whether the current task is being cancelled by someone (not merely woken by
    `close()` cancelling what it awaited). Python 3.10 cannot tell: assume not."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


def _closed_error(route: Route[Any]) -> ClientClosedError:
    return ClientClosedError(f"{route.endpoint}: this Conduit client was closed during the call")


async def _excerpt(resp: aiohttp.ClientResponse) -> bytes:
    """At most 64 KiB of an error body: a 5xx with a huge body is still a `ServerError`."""
    length = resp.content_length
    if length is not None and length <= _ERROR_BODY_LIMIT and _plain(resp):
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 14):
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break  # the rest is dropped with the connection
    return b"".join(chunks)[:_ERROR_BODY_LIMIT]


def _plain(resp: aiohttp.ClientResponse) -> bool:
    """True if Content-Length is the size read: a compressed body (a 50 KB gzip can
    inflate to gigabytes) must be counted as it inflates, so it is streamed."""
    return resp.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower() == "identity"


def _error(
    route: Route[Any],
    status: int,
    body: bytes,
    url: str,
    secrets: tuple[str, ...],
    retry_after: float | None,
) -> APIStatusError:
    # Redact before any cut: a cut made first could leave a token's head in the excerpt.
    text = redact(body.decode("utf-8", errors="replace"), *secrets)
    code = message = None
    try:
        payload = _json.loads(body) if body else None
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        raw_code, raw_message = payload.get("code"), payload.get("message")
        code = None if raw_code is None else redact(str(raw_code), *secrets)[:200]
        message = None if raw_message is None else redact(str(raw_message), *secrets)[:1000]
    return error_for_status(
        status=status,
        method=route.method,
        path=urlsplit(url).path,
        code=code,
        message=message,
        body=text,
        retry_after=retry_after,
        api=route.api,
    )


def redact(text: str, *secrets: str) -> str:
    """Hide token values in text that may reach a message or a log."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return _TOKEN_FIELD.sub(r'\1"<redacted>"', text)
