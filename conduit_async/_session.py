"""The async session: the one place bytes move.

It owns (or borrows) one `aiohttp.ClientSession`, adds the bearer token the
`Auth` gives it, retries what is safe to retry, maps failures to the error
hierarchy, and reconciles POSTs whose outcome became unknown. It knows
nothing of workspaces or companies.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import attrs

from ._auth import Auth
from ._retry import RetryPolicy, parse_retry_after
from .errors import (
    APIStatusError,
    ClientClosedError,
    ConduitError,
    ConduitTimeoutError,
    OutcomeUnknownError,
    RedirectError,
    ResponseFormatError,
    TransportError,
    error_for_status,
)
from .tokens import Clock

__all__ = ["Reconcile", "Response", "Session"]

log = logging.getLogger("conduit_async")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
# A token field as JSON writes it, or as str() of a parsed dict does (a `message` that is
# an object is shown that way): "api_token": "..." or 'token': '...'.
_TOKEN_FIELD = re.compile(
    r"""((?:"[A-Za-z_]*token"|'[A-Za-z_]*token')\s*:\s*)(?:"[^"]*"|'[^']*')""", re.IGNORECASE
)
_NO_BODY = object()


@attrs.frozen
class Response:
    """A 2xx response, decoded.

    `sent_at` is the clock reading just before the request left (the earliest
    moment the server can have acted), `date` the raw `Date` header: together
    they let the token broker measure how far the server's clock is off.
    """

    status: int
    data: Any
    sent_at: float
    date: str | None = None

    @property
    def server_date(self) -> float | None:
        """The server's `Date` header in Unix seconds, or None if absent or unreadable."""
        return _http_date(self.date) if self.date else None


@functools.lru_cache(maxsize=16)
def _http_date(text: str) -> float | None:
    # Cached: the header changes once a second, while a batch reads it thousands of times.
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.timestamp() if when.tzinfo is not None else None


#: Called after a POST's outcome became unknown: returns the object the lost
#: attempt created (as a Response), or None if there is none and a retry is safe.
Reconcile = Callable[[], Awaitable["Response | None"]]


@attrs.define(eq=False)
class Session:
    """Sends requests over one aiohttp session, created lazily inside the running loop.

    `session`, when given, belongs to the caller and is never closed here.
    `max_connections` sizes the connector (aiohttp's default of 100 would
    silently queue bulk work at higher concurrency).
    """

    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    timeout: float = 30.0
    clock: Clock = time.time
    max_connections: int = 100
    max_response_bytes: int = 16 * 1024 * 1024
    user_agent: str = "conduit-async"
    http: aiohttp.ClientSession | None = attrs.field(default=None, alias="session")
    #: Told of every pause this session imposes (a shared token store publishes it).
    on_pause: Callable[[float], None] | None = attrs.field(default=None, repr=False)

    _owns_http: bool = attrs.field(init=False, default=False)
    _closed: bool = attrs.field(init=False, default=False)
    _paused_until: float = attrs.field(init=False, default=0.0)
    _timeout: aiohttp.ClientTimeout = attrs.field(init=False)
    #: Options only a borrowed session needs on each request (ours has them built in,
    #: and passing a timeout per request costs aiohttp a noticeable share of a call).
    _per_request: dict[str, Any] = attrs.field(init=False, factory=dict)
    requests_sent: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._timeout = aiohttp.ClientTimeout(total=self.timeout)
        if self.http is not None:
            self._per_request["timeout"] = self._timeout

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connection_limit(self) -> int:
        """How many connections requests can use at once: a borrowed session's
        connector decides, otherwise `max_connections` (0 means no limit)."""
        if self.http is not None and not self._owns_http:
            return self.http.connector.limit if self.http.connector else 0
        return self.max_connections

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this Conduit client is closed; create a new one")
        if self.http is None:
            # aiohttp binds the session to the running loop: create it here, lazily,
            # never at construction time (which may happen outside any loop).
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self.http = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            )
            self._owns_http = True
        elif self.http.closed:
            raise ClientClosedError("the aiohttp session given to Conduit has been closed")
        return self.http

    async def close(self) -> None:
        """Close the aiohttp session if this client created it. Safe to call twice."""
        self._closed = True
        if self._owns_http and self.http is not None and not self.http.closed:
            await self.http.close()

    @property
    def paused_for(self) -> float:
        """Seconds left of a shared pause requested by a 429 (0 when not paused)."""
        return max(0.0, self._paused_until - self.clock())

    def pause(self, seconds: float) -> None:
        """Hold every request of this session for `seconds`: a 429 slows all workers
        (and, through `on_pause`, every process sharing the token store)."""
        self.hold(seconds)
        if self.on_pause is not None:
            self.on_pause(seconds)

    def hold(self, seconds: float) -> None:
        """Hold every request for `seconds` without telling `on_pause` (a pause another
        process shared)."""
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    async def request(
        self,
        method: str,
        url: str,
        *,
        auth: Auth,
        endpoint: str,
        json_body: Any = _NO_BODY,
        params: Mapping[str, str] | None = None,
        reconcile: Reconcile | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """Send one logical request, retrying as the policy allows.

        `endpoint` names the call in errors (`"POST /link/company/"`). GET and
        DELETE are retried freely. A POST is retried only when it certainly
        did not reach the server (connection refused, 429); when its outcome
        is unknown (timeout, reset, 5xx) `reconcile` decides: it returns what
        the lost attempt created, or None to allow a retry. Without
        `reconcile` such a POST raises `OutcomeUnknownError` at once. A POST
        that is safe to repeat (an update) passes `idempotent=True`.
        A 401 makes the `Auth` drop the refused token; the request is then
        retried once with a fresh one.
        """
        client = self._client()
        if idempotent is None:
            idempotent = method != "POST"
        data = None if json_body is _NO_BODY else _dump(json_body)
        policy = self.retry
        attempt = 0
        auth_retried = False
        outcome_unknown = False
        while True:
            wait = self._paused_until - self.clock()
            if wait > 0:
                await policy.sleep(wait)
            token = auth.cached() or await auth.token()
            attempt += 1
            sent_at = self.clock()
            self.requests_sent += 1
            try:
                status, headers, body = await self._send(
                    client, method, url, token, data, params, endpoint
                )
            except TransportError as exc:
                if not idempotent and exc.sent:
                    outcome_unknown = True
                    found = await self._reconcile(reconcile, endpoint, exc)
                    if found is not None:
                        return found
                if attempt >= policy.attempts:
                    raise
                log.debug("%s: %s; retrying (attempt %d)", endpoint, exc, attempt)
                await policy.sleep(policy.delay(attempt, None))
                continue

            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> %d (attempt %d)", endpoint, status, attempt)
            if 200 <= status < 300:
                # A DELETE documents no body: whatever a 2xx carries, the call succeeded.
                data = None if method == "DELETE" else _load(body, endpoint)
                return Response(status, data, sent_at, headers.get("Date"))
            if status == 401 and not auth_retried and await auth.invalidate(token):
                auth_retried = True
                attempt -= 1  # a token refresh is not a retry of the request
                continue

            retry_after = None
            if status in (429, 503):
                retry_after = parse_retry_after(headers.get("Retry-After"), self.clock())
            error = _error(status, headers, body, method, url, token, retry_after)
            if status == 409 and outcome_unknown:
                # An earlier attempt that we lost track of created it.
                found = await self._reconcile(reconcile, endpoint, error)
                if found is not None:
                    return found
                raise error
            if not policy.retries_status(status):
                raise error
            if not idempotent and status != 429:
                outcome_unknown = True
                found = await self._reconcile(reconcile, endpoint, error)
                if found is not None:
                    return found
            if attempt >= policy.attempts:
                raise error
            delay = policy.delay(attempt, retry_after)
            if status == 429:
                self.pause(delay)
            else:
                await policy.sleep(delay)
            log.debug("%s: %d; retrying in %.2f s", endpoint, status, delay)

    async def _reconcile(
        self, reconcile: Reconcile | None, endpoint: str, cause: ConduitError
    ) -> Response | None:
        if reconcile is None:
            raise OutcomeUnknownError(endpoint, cause) from cause
        try:
            return await reconcile()
        except ConduitError as exc:
            raise OutcomeUnknownError(endpoint, cause) from exc

    async def _send(
        self,
        client: aiohttp.ClientSession,
        method: str,
        url: str,
        token: str,
        data: bytes | None,
        params: Mapping[str, str] | None,
        endpoint: str,
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = {"Authorization": f"Bearer {token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                async with client.request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=headers,
                    allow_redirects=False,
                    **self._per_request,
                ) as resp:
                    location = resp.headers.get("Location")
                    if resp.status not in _REDIRECTS or not location:
                        return resp.status, resp.headers, await self._read(resp, endpoint)
                target = urljoin(url, location)
                refusal = None
                if _origin(target) != _origin(url):
                    # Following would hand the bearer token to another host.
                    refusal = (
                        f"refused to follow a redirect to another origin "
                        f"({_origin(target)}): the Authorization header would leak"
                    )
                elif resp.status in (301, 302, 303) and method != "GET":
                    refusal = f"refused to follow a redirect that would turn a {method} into a GET"
                if refusal is not None:
                    raise RedirectError(
                        status=resp.status, method=method, path=urlsplit(url).path, message=refusal
                    )
                url = target
            raise RedirectError(
                status=resp.status,
                method=method,
                path=urlsplit(url).path,
                message=f"more than {_MAX_REDIRECTS} redirects",
            )
        except asyncio.TimeoutError as exc:
            connect_only = isinstance(exc, aiohttp.ConnectionTimeoutError)
            raise ConduitTimeoutError(
                endpoint, f"timed out after {self.timeout:g} s", sent=not connect_only
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(endpoint, f"cannot connect: {exc.os_error}", sent=False) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(endpoint, f"{type(exc).__name__}: {exc}") from None

    async def _read(self, resp: aiohttp.ClientResponse, endpoint: str) -> bytes:
        """The body, refusing to hold more than `max_response_bytes` in memory.

        An error body is only ever shown as an excerpt, so a huge one is cut
        short rather than refused: a 5xx stays a `ServerError`.
        """
        if not 200 <= resp.status < 300:
            return await _excerpt(resp)
        limit = self.max_response_bytes
        length = resp.content_length
        if length is not None:
            if length > limit:
                raise ResponseFormatError(endpoint, f"body of {length} bytes is over {limit}")
            if _plain(resp):
                return await resp.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise ResponseFormatError(endpoint, f"body is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


_ERROR_BODY_LIMIT = 64 * 1024


async def _excerpt(resp: aiohttp.ClientResponse) -> bytes:
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
    return resp.headers.get("Content-Encoding", "identity").strip().lower() == "identity"


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dump(body: Any) -> bytes:
    return _encode(body).encode()


def _load(body: bytes, endpoint: str) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json decodes
        # The body itself is left out: a truncated company response holds a token.
        raise ResponseFormatError(endpoint, f"body is not valid JSON ({len(body)} bytes)") from None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    method: str,
    url: str,
    token: str,
    retry_after: float | None,
) -> APIStatusError:
    # Redact before any cut: a cut made first could leave a token's head in the excerpt.
    text = redact(body.decode("utf-8", errors="replace"), token)
    code = message = None
    try:
        payload = json.loads(body) if body else None
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        raw_code, raw_message = payload.get("code"), payload.get("message")
        code = None if raw_code is None else redact(str(raw_code), token)[:200]
        message = None if raw_message is None else redact(str(raw_message), token)[:1000]
    return error_for_status(
        status=status,
        method=method,
        path=urlsplit(url).path,
        code=code,
        message=message,
        body=text,
        retry_after=retry_after,
    )


def redact(text: str, token: str | None = None) -> str:
    """Hide token values in text that may reach a message or a log."""
    if token:
        text = text.replace(token, "<redacted>")
    return _TOKEN_FIELD.sub(r'\1"<redacted>"', text)
