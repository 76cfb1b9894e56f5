"""A server that answers, but not as the spec says: HTML, nothing, megabytes, bombs, trickles.

A tiny aiohttp.web app of our own on 127.0.0.1 plays the hostile server; the
SDK must turn whatever it sends into a clear `ConduitError` naming the call,
without ever holding an oversize body in memory. The `Retry-After` header is
fed in every legal and illegal form through the fake server.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web

from conduit_async import (
    Conduit,
    ConduitError,
    ConduitTimeoutError,
    RateLimitError,
    ResponseFormatError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from conduit_async.testing import FakeConduit, Fault, ManualClock

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MB = 1024 * 1024
BIG = 50 * MB
LIMIT = 1 * MB
SECRET = "hostile-SECRET-91c2"


class HostileServer:
    """A loopback server that answers every request with `handler` (an empty JSON list by
    default), recording each request and counting the bytes `stream` managed to send."""

    def __init__(self) -> None:
        self.handler: Handler = _empty_list
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.sent = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def requests(self) -> int:
        return len(self.seen)

    @property
    def authorizations(self) -> list[str | None]:
        """The `Authorization` header of each request, in order."""
        return [headers.get("Authorization") for _, _, headers, _ in self.seen]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path, dict(request.headers), body))
        return await self.handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def stream(
        self,
        request: web.Request,
        chunks: Any,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        length: int | None = None,
        delay: float = 0.0,
    ) -> web.StreamResponse:
        """Send `chunks` one by one (chunked unless `length` is given), stopping quietly
        when the client hangs up."""
        resp = web.StreamResponse(status=status, headers=headers or {})
        resp.content_type = (headers or {}).get("Content-Type", "application/json")
        if length is None:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = length
        await resp.prepare(request)
        try:
            for chunk in chunks:
                await resp.write(chunk)
                self.sent += len(chunk)
                if delay:
                    await asyncio.sleep(delay)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client left: exactly what a bounded reader should do
        return resp


async def _empty_list(request: web.Request) -> web.StreamResponse:
    return web.json_response([])


@pytest.fixture
async def server() -> AsyncIterator[HostileServer]:
    srv = HostileServer()
    await srv.start()
    yield srv
    await srv.close()


def client(server: HostileServer, **kwargs: Any) -> Conduit:
    kwargs.setdefault("retry", RetryPolicy.never())
    return Conduit(
        SECRET,
        SECRET + "-link",
        base_url=server.url + "v2/",
        link_base_url=server.url + "link/",
        **kwargs,
    )


def fixed(body: bytes | str, status: int = 200, content_type: str = "text/html") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, status=status, content_type=content_type)

    return handler


#: One call per endpoint shape: object, list, POST, company-token call (via the broker).
CALLS: dict[str, tuple[str, Callable[[Conduit], Awaitable[Any]]]] = {
    "get company": ("GET /link/company/{cid}/", lambda c: c.companies.get("acme1")),
    "create company": ("POST /link/company/", lambda c: c.companies.create("acme1")),
    "list workspaces": ("GET /v2/workspaces/", lambda c: c.workspaces.list()),
    "list dashboards": ("GET /v2/dashboards/", lambda c: c.dashboards.list()),
    "share url": ("GET /v2/dashboards/{dashboard_id}/share/", lambda c: c.dashboards.share_url(1)),
    "clone": (
        "POST /v2/dashboards/{dashboard_id}/clone/",
        lambda c: c.dashboards.clone(1, workspace=2),
    ),
    # The company token is fetched first, and that fetch is what meets the bad body.
    "integrations": ("GET /link/company/{cid}/", lambda c: c.company("acme1").integrations()),
    "list companies": ("GET /link/company/", lambda c: c.companies.list()),
}

HTML = (
    "<!doctype html><html><head><title>Welcome to nginx!</title></head>"
    f"<body><h1>It works</h1><p>{SECRET}</p></body></html>"
)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(
    "body", [HTML, "", "   ", "null", '{"truncated": ', "[" * 100_000], ids=repr
)
async def test_a_200_that_is_not_the_documented_json_is_a_format_error_naming_the_call(
    server: HostileServer, call: str, body: str
) -> None:
    server.handler = fixed(body)
    endpoint, invoke = CALLS[call]
    async with client(server) as conduit:
        with pytest.raises(ConduitError) as caught:
            await invoke(conduit)
    exc = caught.value
    assert type(exc) is ResponseFormatError, repr(exc)
    assert exc.endpoint == endpoint
    assert str(exc).startswith(endpoint + ": unexpected response")
    assert SECRET not in str(exc)
    assert "nginx" not in str(exc)  # the body is never echoed: it may hold a token
    assert server.requests == 1  # a 2xx is an answer, never retried


async def test_a_delete_answered_200_with_html_still_succeeded(server: HostileServer) -> None:
    server.handler = fixed(HTML)
    async with client(server) as conduit:
        await conduit.workspaces.disable(3)
    assert server.requests == 1


async def test_several_megabytes_of_valid_json_within_the_limit_are_read(
    server: HostileServer,
) -> None:
    rows = b",".join(b'{"id":%d,"name":"Dashboard number %d"}' % (i, i) for i in range(100_000))
    body = b"[" + rows + b"]"
    assert len(body) > 4 * MB
    server.handler = fixed(body, content_type="application/json")
    async with client(server) as conduit:
        dashboards = await conduit.dashboards.list()
    assert len(dashboards) == 100_000
    assert dashboards[-1].name == "Dashboard number 99999"


def zeros(total: int, size: int = 64 * 1024) -> Any:
    chunk = b" " * size
    return (chunk for _ in range(total // size))


async def measure(call: Awaitable[Any]) -> tuple[BaseException | None, float, int]:
    """Run `call`; its exception, elapsed seconds and traced peak memory in bytes."""
    tracemalloc.start()
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        await call
    except BaseException as exc:
        error = exc
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return error, elapsed, peak


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
async def test_an_oversize_2xx_body_is_refused_without_being_read_whole(
    server: HostileServer, framing: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        length = BIG if framing == "content-length" else None
        return await server.stream(request, zeros(BIG), length=length)

    server.handler = handler
    async with client(server, max_response_bytes=LIMIT) as conduit:
        error, elapsed, peak = await measure(conduit.dashboards.list())
    assert type(error) is ResponseFormatError, repr(error)
    assert error.endpoint == "GET /v2/dashboards/"
    assert f"over {LIMIT}" in str(error)
    assert elapsed < 5.0
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB for a {LIMIT / MB:.0f} MB limit"
    assert server.sent < BIG / 2  # the client hung up long before the end


def gzip_bomb(total: int) -> bytes:
    """`total` bytes of spaces, gzip-compressed (about a thousandth of the size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * MB
    parts = [packer.compress(block) for _ in range(total // MB)]
    return b"".join([*parts, packer.flush()])


BOMB = gzip_bomb(BIG)


@pytest.mark.parametrize("status", [200, 500])
async def test_a_compressed_body_is_limited_by_its_decompressed_size(
    server: HostileServer, status: int
) -> None:
    # 50 KB on the wire, 50 MB once inflated: Content-Length alone must not be trusted.
    assert len(BOMB) < LIMIT / 10

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.Response(body=BOMB, status=status, content_type="application/json")
        resp.headers["Content-Encoding"] = "gzip"
        return resp

    server.handler = handler
    async with client(server, max_response_bytes=LIMIT) as conduit:
        error, elapsed, peak = await measure(conduit.dashboards.list())
    expected = ResponseFormatError if status == 200 else ServerError
    assert type(error) is expected, repr(error)
    assert elapsed < 5.0
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB for a {LIMIT / MB:.0f} MB limit"


async def test_a_huge_error_body_is_cut_to_an_excerpt_and_stays_a_server_error(
    server: HostileServer,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await server.stream(request, zeros(BIG), status=503)

    server.handler = handler
    async with client(server, max_response_bytes=LIMIT) as conduit:
        error, elapsed, peak = await measure(conduit.dashboards.list())
    assert type(error) is ServerError, repr(error)
    assert error.status == 503
    assert len(error.body) <= 4096
    assert elapsed < 5.0
    assert peak < 8 * MB
    assert server.sent < BIG / 2


async def test_a_body_that_trickles_forever_times_out(server: HostileServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await server.stream(request, (b" " for _ in range(10_000)), delay=0.05)

    server.handler = handler
    async with client(server, timeout=0.5) as conduit:
        started = time.perf_counter()
        with pytest.raises(ConduitTimeoutError) as caught:
            await conduit.dashboards.list()
    assert time.perf_counter() - started < 3.0
    assert caught.value.endpoint == "GET /v2/dashboards/"
    assert "timed out after 0.5 s" in str(caught.value)


async def test_a_body_cut_short_is_a_transport_error_and_a_get_is_retried(
    server: HostileServer,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await server.stream(request, [b'[{"id": 1, "na'], length=1000)
        assert request.transport is not None
        request.transport.close()
        return resp

    server.handler = handler
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async with client(server, retry=RetryPolicy(sleep=sleep)) as conduit:
        with pytest.raises(TransportError) as caught:
            await conduit.dashboards.list()
    assert caught.value.endpoint == "GET /v2/dashboards/"
    assert server.requests == 3
    assert len(delays) == 2


async def test_a_peer_that_does_not_speak_http_is_a_transport_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with Conduit(
            SECRET, base_url=f"http://127.0.0.1:{port}/v2/", retry=RetryPolicy.never()
        ) as conduit:
            with pytest.raises(TransportError) as caught:
                await conduit.dashboards.list()
    finally:
        srv.close()
        await srv.wait_closed()
    assert caught.value.endpoint == "GET /v2/dashboards/"
    assert SECRET not in str(caught.value)


# -- Retry-After in every form, through the fake server ------------------------------------

CAP = 30.0
BACKOFF = 0.25  # base 0.5 s x jitter 0.5 for the first retry: what "no usable header" gives


def http_date(clock: ManualClock, offset: float) -> str:
    return formatdate(clock() + offset, usegmt=True)


# (header sent, delay the client must wait before its retry)
RETRY_AFTER: list[tuple[Callable[[ManualClock], str], float]] = [
    (lambda c: "5", 5.0),
    (lambda c: "0", 0.0),
    (lambda c: "2.5", 2.5),
    (lambda c: "  7  ", 7.0),
    (lambda c: "29.999", 29.999),
    (lambda c: str(10**12), CAP),  # huge: capped
    (lambda c: "999999999999999", CAP),
    (lambda c: http_date(c, 20), 20.0),  # a date ahead
    (lambda c: http_date(c, -3600), 0.0),  # a date gone: at once
    (lambda c: http_date(c, 10**9), CAP),  # decades ahead: capped
    (lambda c: "Fri, 31 Dec 9999 23:59:59 GMT", CAP),
    (lambda c: "-5", BACKOFF),  # negative: ignored, own backoff
    (lambda c: "-0.5", BACKOFF),
    (lambda c: "1e3", BACKOFF),
    (lambda c: "inf", BACKOFF),
    (lambda c: "NaN", BACKOFF),
    (lambda c: "", BACKOFF),
    (lambda c: "soon", BACKOFF),
    (lambda c: "5 seconds", BACKOFF),
    (lambda c: "5, 10", BACKOFF),
    (lambda c: "0x10", BACKOFF),
    (lambda c: "Thu, 32 Foo 2024 25:61:61 GMT", BACKOFF),
    (lambda c: "Wed, 21 Oct 2015 07:28:00", BACKOFF),  # no zone: not an HTTP date
    (lambda c: "1" * 400, CAP),  # legal delta-seconds, absurdly long: capped
]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeConduit]:
    async with FakeConduit(clock=clock) as server:
        server.add_company("acme1")
        yield server


def fake_client(fake: FakeConduit, clock: ManualClock, delays: list[float]) -> Conduit:
    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await clock.sleep(seconds)

    return fake.client(
        clock=clock,
        retry=RetryPolicy(sleep=sleep, jitter=lambda: 0.5, max_retry_after=CAP),
    )


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("header,wait", RETRY_AFTER, ids=[str(i) for i in range(len(RETRY_AFTER))])
async def test_retry_after_in_any_form_is_honoured_capped_or_ignored(
    fake: FakeConduit,
    clock: ManualClock,
    status: int,
    header: Callable[[ManualClock], str],
    wait: float,
) -> None:
    value = header(clock)
    fake.faults.script("GET /link/company/{cid}/", [Fault.status(status, retry_after=value)])
    delays: list[float] = []
    async with fake_client(fake, clock, delays) as conduit:
        started = clock()
        company = await conduit.companies.get("acme1")
    assert company.id == "acme1"
    assert fake.stats.count("GET /link/company/{cid}/", status) == 1
    assert fake.stats.count("GET /link/company/{cid}/", 200) == 1
    assert sum(delays) == pytest.approx(wait, abs=1e-6), (value, delays)
    assert clock() - started == pytest.approx(wait, abs=1e-6)


async def test_a_rate_limit_that_never_lifts_gives_up_with_the_servers_wish(
    fake: FakeConduit, clock: ManualClock
) -> None:
    fake.faults.script("GET /link/company/{cid}/", [Fault.status(429, retry_after=str(10**12))] * 3)
    delays: list[float] = []
    async with fake_client(fake, clock, delays) as conduit:
        with pytest.raises(RateLimitError) as caught:
            await conduit.companies.get("acme1")
    assert caught.value.retry_after == 10**12  # what the server said, for the caller to see
    assert delays == [CAP, CAP]  # what the client waited: capped
