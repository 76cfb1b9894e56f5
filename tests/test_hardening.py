"""Regression tests for the hardening issue (#11): nothing done twice, every error typed,
no token in any error, a client that survives its event loop.

Each section names the item of the issue it guards; the last one covers
`with_options(max_wait=)`. They run against the embedded `FakeConduit` (real
HTTP on a loopback port, deterministic faults), aioresponses, or a tiny hostile
server of their own; waits go through a virtual clock unless the test is about
a request that really stalls or a close that must cut a real sleep short.

Tests marked `xfail(strict=True)` show a defect still open, described in their
reason: they start passing (and so failing the run) when it is fixed, and the
marker goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
import subprocess
import sys
import time
import traceback
import types
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

import aiohttp
import pytest
from aiohttp import web
from core_support import (
    LINK,
    LINK_TOKEN,
    V2,
    Recorder,
    VirtualTime,
    company_json,
    make_conduit,
    workspace_json,
)
from multidict import CIMultiDict, CIMultiDictProxy
from test_hostile_server import HostileServer
from yarl import URL

from conduit_async import (
    AmbiguousWorkspaceError,
    ClientClosedError,
    CompanySpec,
    Conduit,
    ConduitError,
    ConduitTimeoutError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitError,
    RedirectError,
    ResponseFormatError,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationError,
    WorkspaceSpec,
)
from conduit_async.testing import FakeConduit, Fault, ManualClock

T = TypeVar("T")

DISABLE = "DELETE /v2/workspaces/{workspace_id}/"
DELETE_CREDENTIAL = "DELETE /link/credentials/{credential_id}/"
LIST_WORKSPACES = "GET /v2/workspaces/"
CREATE_WORKSPACE = "POST /v2/workspaces/"
CLONE = "POST /v2/dashboards/{dashboard_id}/clone/"
LIST_DASHBOARDS = "GET /v2/dashboards/"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeConduit]:
    async with FakeConduit(clock=clock) as server:
        yield server


def against(fake: FakeConduit, clock: ManualClock | None = None, **kwargs: Any) -> Conduit:
    """A client of `fake`; its retries wait on `clock` (instantly) when one is given."""
    if clock is not None:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("retry", RetryPolicy(sleep=clock.sleep, jitter=lambda: 0.5))
    else:  # the client's own defaults, not the fake's clock
        kwargs.setdefault("clock", time.time)
        kwargs.setdefault("retry", RetryPolicy())
    return fake.client(**kwargs)


# -- 10: a DELETE whose answer was lost after the server applied it ----------------------


async def test_a_disable_whose_answer_was_lost_succeeds_and_forgets_the_token(
    fake: FakeConduit, clock: ManualClock
) -> None:
    ws = fake.add_workspace("Acme", ext_id="crm-1")
    async with against(fake, clock) as conduit:
        await conduit.workspaces.list()  # the token is cached, and the connection is warm
        assert conduit.tokens.cached_workspace(ws.id, None) is not None
        fake.faults.script(DISABLE, [Fault.lost()])
        await conduit.workspaces.disable(ws.id)  # no NotFoundError: the lost attempt did it
        assert conduit.tokens.cached_workspace(ws.id, None) is None
        assert conduit.tokens.cached_workspace(None, "crm-1") is None
        with pytest.raises(NotFoundError):
            await conduit.workspace(ws.id).dashboards.list()
        assert fake.stats.count(DISABLE, "lost") == 1
        assert fake.stats.count(DISABLE, 404) == 1
        assert fake.stats.count(DISABLE) == 2
        assert fake.stats.requests_total == conduit.requests_sent
    assert ws.id not in fake.workspaces


async def test_a_credential_delete_whose_answer_was_lost_succeeds(
    fake: FakeConduit, clock: ManualClock
) -> None:
    fake.add_company("acme1")
    credential = fake.credentials("acme1")[0]
    async with against(fake, clock) as conduit:
        await conduit.company("acme1").integrations()  # token fetched, connection warm
        fake.faults.script(DELETE_CREDENTIAL, [Fault.lost()])
        await conduit.company("acme1").delete_credential(credential.id)
        assert fake.stats.count(DELETE_CREDENTIAL, "lost") == 1
        assert fake.stats.count(DELETE_CREDENTIAL, 404) == 1
        assert fake.stats.requests_total == conduit.requests_sent
    assert credential.id not in [c.id for c in fake.credentials("acme1")]


async def test_a_delete_of_something_never_there_is_still_not_found(
    fake: FakeConduit, clock: ManualClock
) -> None:
    async with against(fake, clock) as conduit:
        with pytest.raises(NotFoundError):
            await conduit.workspaces.disable(999)
    assert fake.stats.count(DISABLE) == 1


@pytest.mark.parametrize("warm", [1, 3])
async def test_the_sdk_owns_every_resend_of_a_get_on_a_reused_connection(
    fake: FakeConduit, clock: ManualClock, warm: int
) -> None:
    """aiohttp resends an idempotent request once, silently, when a reused keep-alive
    connection drops; the SDK turns that off and counts each of its own resends."""
    async with against(fake, clock) as conduit:
        for _ in range(warm):
            await conduit.dashboards.list()
        fake.faults.script(LIST_DASHBOARDS, [Fault.reset(), Fault.reset()])
        assert await conduit.dashboards.list() == await conduit.dashboards.list()
        assert fake.stats.count(LIST_DASHBOARDS, "reset") == 2
        assert conduit.requests_sent == fake.stats.requests_total == warm + 4


# -- 9: a malformed response that echoes the Authorization header ------------------------

ECHO_TOKEN = "echo-SECRET-org-5d1c"
ECHO_LINK_TOKEN = "echo-SECRET-link-8a2f"
ECHO_COMPANY_TOKEN = "echo-SECRET-company-3e77"

#: Broken responses, each carrying `%s`: where the echoed `Authorization` line goes.
MALFORMED: dict[str, bytes] = {
    "status line": b"HTTP/1.1 2OO %s\r\nContent-Length: 0\r\n\r\n",
    "no status line": b"%s\r\n\r\n",
    "header name": b"HTTP/1.1 200 OK\r\nBad Header %s\r\nContent-Length: 2\r\n\r\n[]",
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\n[]",
    "chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\n",
    "later chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n%s\r\n",
    "error status line": b"HTTP/1.1 5OO %s\r\nContent-Length: 0\r\n\r\n",
}


class EchoServer:
    """A broken proxy on 127.0.0.1: answers every request with `template`, the request's
    own `Authorization` line (or just the token, `bare`) pasted in. A request for a
    company is answered properly, so that company calls get a token of their own."""

    def __init__(self, template: bytes, *, bare: bool = False) -> None:
        self.template = template
        self.bare = bare
        self.requests = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        self.requests += 1
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1]
        auth = next(line for line in lines if line.lower().startswith(b"authorization:"))
        if target == b"/link/company/acme1/":
            body = json.dumps(
                company_json("acme1", token=ECHO_COMPANY_TOKEN, expires_at=time.time() + 600)
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        else:
            echo = auth.rsplit(b" ", 1)[1] if self.bare else auth
            writer.write(self.template.replace(b"%s", echo))
        try:
            await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> EchoServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def reachable_text(root: object) -> list[str]:
    """Every string reachable from `root` through exception chains (`__cause__`,
    `__context__`, args, notes), attributes (`vars()` and slots) and containers, plus
    the str and repr of every object met on the way. Tracebacks and frames are not
    followed: they hold the caller's own locals, not what the exception carries."""
    skip = (
        types.TracebackType,
        types.FrameType,
        types.ModuleType,
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        type,
    )
    seen: set[int] = set()
    stack: list[object] = [root]
    found: list[str] = []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (bool, int, float, *skip)):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.append(obj)
            continue
        if isinstance(obj, (bytes, bytearray, memoryview)):
            found.append(bytes(obj).decode("latin-1"))
            continue
        for show in (str, repr):
            with contextlib.suppress(Exception):  # a broken __repr__ holds nothing to find
                found.append(show(obj))
        if isinstance(obj, Mapping):
            stack.extend(obj.keys())
            stack.extend(obj.values())
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
            continue
        if isinstance(obj, BaseException):
            stack.extend([obj.args, obj.__cause__, obj.__context__])
            stack.extend(getattr(obj, "__notes__", ()))
        with contextlib.suppress(TypeError):  # no __dict__
            stack.append(dict(vars(obj)))
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if isinstance(name, str) and not name.startswith("__"):
                    stack.append(getattr(obj, name, None))
    return found


def assert_no_secret(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"{secret[:12]}... found in {text[:300]!r}"
        # A token cut short is a leak too: no fragment of one may show either.
        assert "SECRET" not in text, f"a token fragment in {text[:300]!r}"


def test_the_walk_finds_a_token_hidden_in_a_chain() -> None:
    """`reachable_text` is not toothless: it finds a token that only aiohttp's exception,
    reached through `__context__`, still holds (how the SDK used to chain it)."""
    info = aiohttp.RequestInfo(
        URL("http://127.0.0.1/v2/"),
        "GET",
        CIMultiDictProxy(CIMultiDict({"Authorization": "Bearer " + ECHO_TOKEN})),
    )
    try:
        try:
            raise aiohttp.ClientResponseError(info, (), status=400, message="bad status line")
        except aiohttp.ClientError:
            raise TransportError("GET /v2/dashboards/", "bad status line") from None
    except TransportError as exc:
        error = exc
    assert error.__cause__ is None and error.__context__ is not None
    assert any(ECHO_TOKEN in text for text in reachable_text(error))
    with pytest.raises(AssertionError):
        assert_no_secret(reachable_text(error), ECHO_TOKEN)


def echo_client(server: EchoServer) -> Conduit:
    async def no_wait(seconds: float) -> None:
        return None

    return Conduit(
        ECHO_TOKEN,
        ECHO_LINK_TOKEN,
        base_url=server.url + "v2/",
        link_base_url=server.url + "link/",
        retry=RetryPolicy(attempts=2, sleep=no_wait),  # one retry: one DEBUG retry log line
    )


ECHO_CALLS: dict[str, Callable[[Conduit], Awaitable[Any]]] = {
    "organization token": lambda c: c.dashboards.list(),
    "Link APP token": lambda c: c.companies.list(),
    "company token": lambda c: c.company("acme1").integrations(),
}


async def in_task(call: Awaitable[T], *, python_task: bool = False) -> T:
    """Await `call` in a task of its own: the event loop's C task, or asyncio's
    pure-Python one (which resumes a coroutine inside an `except` clause, as do
    `backports.asyncio.runner`'s task, used by pytest-asyncio on Python 3.10, and other
    Python-level task wrappers)."""
    loop = asyncio.get_running_loop()
    coro = cast("Coroutine[Any, Any, T]", call)
    task = asyncio.tasks._PyTask(coro, loop=loop) if python_task else loop.create_task(coro)  # type: ignore[attr-defined]
    return await task


async def assert_echo_leaves_no_token(
    caplog: pytest.LogCaptureFixture, shape: str, call: str, bare: bool, python_task: bool
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, aiohttp's, asyncio's
    async with EchoServer(MALFORMED[shape], bare=bare) as server, echo_client(server) as conduit:
        with pytest.raises(ConduitError) as caught:
            await in_task(ECHO_CALLS[call](conduit), python_task=python_task)
    exc = caught.value
    assert isinstance(exc, TransportError), repr(exc)
    secrets = (ECHO_TOKEN, ECHO_LINK_TOKEN, ECHO_COMPANY_TOKEN)
    assert_no_secret(reachable_text(exc), *secrets)
    assert_no_secret(traceback.format_exception(type(exc), exc, exc.__traceback__), *secrets)
    records = [r for r in caplog.records if r.name.startswith("conduit_async")]
    assert any("retrying" in r.getMessage() for r in records)  # the retry was logged
    assert_no_secret([caplog.text, *(r.getMessage() for r in caplog.records)], *secrets)
    assert server.requests >= 2


@pytest.mark.parametrize("bare", [False, True], ids=["header", "token only"])
@pytest.mark.parametrize("call", ECHO_CALLS)
@pytest.mark.parametrize("shape", MALFORMED)
async def test_a_response_echoing_the_token_gives_an_error_that_holds_no_token(
    caplog: pytest.LogCaptureFixture, shape: str, call: str, bare: bool
) -> None:
    await assert_echo_leaves_no_token(caplog, shape, call, bare, python_task=False)


@pytest.mark.parametrize("shape", MALFORMED)
async def test_no_token_in_the_implicit_context_when_a_python_task_runs_the_call(
    caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    await assert_echo_leaves_no_token(
        caplog, shape, "organization token", bare=False, python_task=True
    )


async def test_a_proxy_that_echoes_the_header_is_really_echoing_it() -> None:
    """The hostile server is not toothless: aiohttp's own error holds the token."""
    async with EchoServer(MALFORMED["status line"]) as server, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError) as caught:
            async with session.get(
                server.url + "v2/dashboards/", headers={"Authorization": "Bearer " + ECHO_TOKEN}
            ):
                pass
    assert ECHO_TOKEN in str(caught.value)


# -- 5: redirects to targets aiohttp cannot even parse ----------------------------------


def hostile_locations(port: str) -> dict[str, str]:
    """Redirect targets by name; `port` is the origin's, for the same-origin ones."""
    return {
        "port 99999": "http://127.0.0.1:99999/v2/dashboards/",
        "port not a number": f"http://127.0.0.1:{port}x/v2/dashboards/",
        "broken IPv6 host": "http://[::1",
        "broken IPv6 host with path": "http://[::1/v2/dashboards/",
        "same origin, user:password": f"http://user:pw-SECRET@127.0.0.1:{port}/moved/",
        "same origin, user only": f"http://user@127.0.0.1:{port}/moved/",
        "scheme-relative, user:password": f"//user:pw-SECRET@127.0.0.1:{port}/moved/",
    }


def port_of(server: HostileServer) -> str:
    return server.url.rsplit(":", 1)[1].strip("/")


@pytest.fixture
async def origin() -> AsyncIterator[HostileServer]:
    server = HostileServer()
    await server.start()
    yield server
    await server.close()


def origin_client(origin: HostileServer) -> Conduit:
    async def no_wait(seconds: float) -> None:
        return None

    return Conduit(
        ECHO_TOKEN,
        ECHO_LINK_TOKEN,
        base_url=origin.url + "v2/",
        link_base_url=origin.url + "link/",
        retry=RetryPolicy(sleep=no_wait),
    )


LOCATION_IDS = list(hostile_locations("80"))


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("target", LOCATION_IDS)
async def test_a_redirect_to_a_hostile_target_is_a_redirect_error(
    origin: HostileServer, target: str, status: int
) -> None:
    location = hostile_locations(port_of(origin))[target]

    async def reply(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/moved/"):
            return web.json_response([])
        return web.Response(status=status, headers={"Location": location})

    origin.handler = reply
    async with origin_client(origin) as conduit:
        with pytest.raises(ConduitError) as caught:
            await conduit.dashboards.list()
    exc = caught.value
    assert type(exc) is RedirectError, repr(exc)
    assert exc.status == status
    assert "refused to follow" in str(exc)
    assert [p for _, p, _, _ in origin.seen] == ["/v2/dashboards/"]  # never followed or retried
    assert_no_secret(reachable_text(exc), ECHO_TOKEN, "pw-SECRET")


async def test_a_hostile_redirect_fails_its_row_alone_in_a_batch(origin: HostileServer) -> None:
    locations = hostile_locations(port_of(origin))
    bad = {f"bad{i}": location for i, location in enumerate(locations.values())}

    async def reply(request: web.Request) -> web.StreamResponse:
        cid = (await request.json())["id"]
        if cid in bad:
            return web.Response(status=307, headers={"Location": bad[cid]})
        return web.json_response(company_json(cid, name=None, token=f"ct-{cid}"), status=201)

    origin.handler = reply
    rows = ["good0", *bad, "good1"]
    async with origin_client(origin) as conduit:
        specs = [CompanySpec(cid) for cid in rows]
        results = {r.id: r async for r in conduit.companies.provision(specs, concurrency=4)}
    assert set(results) == set(rows)
    for cid in rows:
        result = results[cid]
        if cid in bad:
            assert result.outcome == "failed", result
            assert type(result.error) is RedirectError, repr(result.error)
        else:
            assert result.outcome == "created", result


# -- 6: credentials in a base URL ---------------------------------------------------------

CREDENTIAL_URLS = [
    "https://user:pw-SECRET@api.example.test/v2/",
    "https://user:pw-SECRET@api.example.test",  # no path
    "https://:pw-SECRET@api.example.test/v2/",  # a password without a user
    "https://user:pw%2DSECRET@api.example.test/v2/",  # percent-encoded
    "http://user:pw-SECRET@[::1]:8080/v2/",  # loopback IPv6
    "HTTPS://user:pw-SECRET@API.EXAMPLE.TEST/v2/",
    "https://user:pw-SECRET@api.example.test?x=1",
]


@pytest.mark.parametrize("url", CREDENTIAL_URLS)
@pytest.mark.parametrize("how", ["base_url", "link_base_url", "CONDUIT_LINK_BASE_URL"])
def test_a_base_url_with_a_password_is_refused_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, url: str, how: str
) -> None:
    kwargs: dict[str, Any] = {}
    if how.startswith("CONDUIT_"):
        monkeypatch.setenv(how, url)
    else:
        kwargs[how] = url
    for insecure in (False, True):
        with pytest.raises(ConfigurationError) as caught:
            Conduit(ECHO_TOKEN, ECHO_LINK_TOKEN, allow_insecure=insecure, **kwargs)
        assert "user name or password" in str(caught.value)
        assert_no_secret(reachable_text(caught.value), "pw-SECRET", "pw%2DSECRET", ECHO_TOKEN)
        assert_no_secret(
            traceback.format_exception(type(caught.value), caught.value, None), "pw-SECRET"
        )


@pytest.mark.parametrize(
    "url",
    [
        # A password with an unencoded '/': URL parsers end the host at the '/', so this
        # reads as host "user", port "pa" -- a base URL no call can use, whose repr and
        # every call's error show "pa/ss-SECRET".
        "https://user:pa/ss-SECRET@api.example.test/v2/",
        "https://api.example.test:99999/v2/",  # port out of range
        "https://api.example.test:port/v2/",  # port not a number
        "https://[::1/v2/",  # broken IPv6 host
    ],
)
async def test_a_base_url_no_parser_can_read_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await Conduit(ECHO_TOKEN, base_url=url).close()
    assert_no_secret(reachable_text(caught.value), "pa/ss-SECRET")


async def test_repr_of_a_client_never_holds_a_token(origin: HostileServer) -> None:
    async with origin_client(origin) as conduit:
        await conduit.dashboards.list()
        shown = [repr(conduit), str(conduit), repr(conduit.with_options(max_wait=1.0))]
        shown += [repr(conduit.workspaces), repr(conduit.companies), repr(conduit.dashboards)]
        shown += [repr(conduit.company("acme1")), repr(conduit.workspace(1))]
    assert_no_secret(shown, ECHO_TOKEN, ECHO_LINK_TOKEN)


# -- 8: CR/LF in a token ------------------------------------------------------------------

BAD_TOKENS = [
    "tok-SECRET\r\nX-Evil: 1",
    "tok-SECRET\n",
    "tok-SECRET\r",
    "\ntok-SECRET",
    "tok-SECRET\x00",
    "tok-SECRET\t1",
    "tok-SECRET\u2028",  # a Unicode line separator
    "tok-SECRET\u00e9",  # not ASCII: no header carries it as it is
]


#: Where a configured token comes from, with each bad value (an environment variable
#: cannot hold a NUL, so that one is only passed as an argument).
CONFIGURED = [
    (how, bad)
    for how in ("token", "link_token", "CONDUIT_TOKEN", "CONDUIT_LINK_TOKEN")
    for bad in BAD_TOKENS
    if not (how.startswith("CONDUIT_") and "\x00" in bad)
]


@pytest.mark.parametrize(("how", "bad"), CONFIGURED, ids=[f"{h}-{b!r}" for h, b in CONFIGURED])
def test_a_configured_token_with_control_characters_is_refused_at_construction(
    monkeypatch: pytest.MonkeyPatch, how: str, bad: str
) -> None:
    for name in ("CONDUIT_TOKEN", "CONDUIT_LINK_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    kwargs: dict[str, Any] = {"base_url": "https://api.test/v2/"}
    if how.startswith("CONDUIT_"):
        monkeypatch.setenv(how, bad)
    else:
        kwargs[how] = bad
    with pytest.raises(ConfigurationError) as caught:
        Conduit(**kwargs)
    assert ("link" in how.lower()) == ("link_token" in str(caught.value))
    assert_no_secret(reachable_text(caught.value), bad, "tok-SECRET")


@pytest.mark.parametrize("bad", BAD_TOKENS[:4], ids=repr)
async def test_a_company_token_with_cr_lf_from_the_server_is_a_format_error(
    conduit: Conduit, http: Recorder, bad: str
) -> None:
    http.get(LINK + "company/acme1/", payload=company_json("acme1", token=bad), repeat=True)
    http.post(LINK + "company/", payload=company_json("acme2", token=bad))
    for call in (
        conduit.companies.get("acme1"),
        conduit.company("acme1").integrations(),  # the fetch of its token meets it
        conduit.companies.create("acme2"),
    ):
        with pytest.raises(ConduitError) as caught:
            await call
        assert type(caught.value) is ResponseFormatError, repr(caught.value)
        assert_no_secret(reachable_text(caught.value), bad, "tok-SECRET")
    # Nothing was sent with it: the only requests are the three that fetched it.
    assert [s.token for s in http.sent] == [LINK_TOKEN] * 3


async def test_a_workspace_token_with_cr_lf_from_the_server_is_a_format_error(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(1, "ws-SECRET\r\nX-Evil: 1")])
    with pytest.raises(ConduitError) as caught:
        await conduit.workspace(1).dashboards.list()
    assert type(caught.value) is ResponseFormatError, repr(caught.value)
    assert_no_secret(reachable_text(caught.value), "ws-SECRET")
    assert [s.url for s in http.sent] == [V2 + "workspaces/"]


# -- 7: one client, two event loops -------------------------------------------------------

ORG = "org_twoloops_0123456789abcdef"
LINK_APP = "link_twoloops_0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def two_loops_client(port: int) -> Conduit:
    return Conduit(
        ORG,
        LINK_APP,
        base_url=f"http://127.0.0.1:{port}/v2/",
        link_base_url=f"http://127.0.0.1:{port}/link/",
        retry=RetryPolicy.never(),
    )


async def serve_and_call(conduit: Conduit, port: int) -> list[str]:
    """Start a fake on `port` for the length of one call to it."""
    async with FakeConduit(port=port, org_token=ORG, link_token=LINK_APP) as fake:
        fake.add_workspace("Acme", ext_id="crm-1")
        return [w.name for w in await conduit.workspaces.list()]


def test_a_client_made_outside_any_loop_serves_two_asyncio_runs() -> None:
    """Sync on purpose: `asyncio.run` cannot run inside pytest-asyncio's loop."""
    port = free_port()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conduit = two_loops_client(port)  # at "module level": no loop runs
        assert asyncio.run(serve_and_call(conduit, port)) == ["Acme"]
        assert asyncio.run(serve_and_call(conduit, port)) == ["Acme"]
        assert conduit.requests_sent == 2
        assert not conduit.closed
        asyncio.run(conduit.close())  # closing from yet another loop is fine too
        assert conduit.closed
        del conduit
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def test_a_client_whose_loop_ended_without_shutdown_says_so() -> None:
    """A loop closed without `shutdown_asyncgens` (not `asyncio.run`) cannot hand the
    session on: the next loop gets a `ConfigurationError` saying what to do, not
    'Event loop is closed'; the first loop can still close the client cleanly."""
    port = free_port()
    conduit = two_loops_client(port)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(serve_and_call(conduit, port)) == ["Acme"]
        with pytest.raises(ConfigurationError, match="one Conduit client per event loop"):
            asyncio.run(serve_and_call(conduit, port))
        first.run_until_complete(conduit.close())
    finally:
        first.close()


SCRIPT = """
import asyncio, sys
from conduit_async import Conduit, RetryPolicy
from conduit_async.testing import FakeConduit

PORT = int(sys.argv[1])
conduit = Conduit("org_x0123456789", "link_x0123456789",
                  base_url=f"http://127.0.0.1:{PORT}/v2/", retry=RetryPolicy.never())

async def main() -> int:
    async with FakeConduit(port=PORT, org_token="org_x0123456789",
                           link_token="link_x0123456789") as fake:
        fake.add_workspace("Acme")
        return len(await conduit.workspaces.list())

assert asyncio.run(main()) == 1
assert asyncio.run(main()) == 1
print("ok")
"""


def test_two_asyncio_runs_in_a_fresh_interpreter_warn_of_nothing() -> None:
    """As the README's module-level example runs it: -W error, dev mode (which reports
    unclosed transports and sessions), nothing on stderr."""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", SCRIPT, str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "ok", "")


# -- 4: closing the client while requests are under way -----------------------------------


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll (real time) until `condition()` holds."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def outcomes(tasks: list[asyncio.Task[Any]]) -> list[object]:
    """What each task came to: its result or its exception (never a cancellation)."""
    assert all(t.done() for t in tasks)
    assert [t for t in tasks if t.cancelled()] == []
    return [t.exception() or t.result() for t in tasks]


async def test_closing_under_200_requests_in_flight_gives_results_or_client_closed(
    fake: FakeConduit, clock: ManualClock
) -> None:
    # The first 20 answered at once, the rest stalled; the connector holds 100 at a time,
    # so some wait in flight and some wait for a connection when the client closes.
    fake.faults.script(LIST_DASHBOARDS, [None] * 20 + [Fault.latency(30.0)] * 180)
    conduit = against(fake, clock)
    tasks = [asyncio.create_task(conduit.dashboards.list()) for _ in range(200)]
    await wait_for(lambda: fake.stats.requests_total >= 100)
    await wait_for(lambda: sum(t.done() for t in tasks) >= 20)  # the answered ones
    await conduit.close()
    await asyncio.wait(tasks, timeout=5.0)
    got = outcomes(tasks)
    answered = [g for g in got if isinstance(g, list)]
    closed = [g for g in got if isinstance(g, ClientClosedError)]
    others = [g for g in got if not isinstance(g, (list, ClientClosedError))]
    assert others == []
    assert (len(answered), len(closed)) == (20, 180)


async def test_a_retry_sleeping_when_the_client_closes_ends_with_client_closed(
    fake: FakeConduit,
) -> None:
    fake.faults.script(LIST_DASHBOARDS, [Fault.status(503, retry_after=30)])
    conduit = against(fake, retry=RetryPolicy())  # a real asyncio.sleep of 30 s
    task = asyncio.create_task(conduit.dashboards.list())
    await wait_for(lambda: fake.stats.count(LIST_DASHBOARDS, 503) == 1)
    await asyncio.sleep(0.05)  # into the sleep
    started = time.monotonic()
    await conduit.close()
    await asyncio.wait([task], timeout=2.0)
    assert time.monotonic() - started < 2.0
    assert isinstance(outcomes([task])[0], ClientClosedError)
    assert fake.stats.count(LIST_DASHBOARDS) == 1  # and no retry after the close


#: Callers that wait on the broker's one shared fetch: a company's token (through a
#: company call, or asked for directly) and a workspace's (a listing).
SHARED_FETCHES: dict[str, tuple[str, Callable[[Conduit], Awaitable[Any]]]] = {
    "company call": ("GET /link/company/{cid}/", lambda c: c.company("acme1").integrations()),
    "company token": ("GET /link/company/{cid}/", lambda c: c.companies.token("acme1")),
    "workspace call": (LIST_WORKSPACES, lambda c: c.workspace(ext_id="crm-1").dashboards.list()),
}


@pytest.mark.parametrize("caller", SHARED_FETCHES)
async def test_waiters_on_a_shared_token_fetch_get_client_closed(
    fake: FakeConduit, clock: ManualClock, caller: str
) -> None:
    fake.add_company("acme1")
    fake.add_workspace("Acme", ext_id="crm-1")
    route, call = SHARED_FETCHES[caller]
    fake.faults.script(route, [Fault.latency(30.0)])
    conduit = against(fake, clock)
    tasks = [asyncio.create_task(call(conduit)) for _ in range(20)]
    await wait_for(lambda: fake.stats.requests_total == 1)
    await asyncio.sleep(0.05)
    await conduit.close()
    await asyncio.wait(tasks, timeout=5.0)
    got = outcomes(tasks)
    assert all(isinstance(g, ClientClosedError) for g in got), got
    assert fake.stats.requests_total == 1  # one fetch for all, and nothing after the close


async def test_a_call_after_close_is_client_closed(fake: FakeConduit) -> None:
    conduit = against(fake)
    await conduit.dashboards.list()
    await conduit.close()
    with pytest.raises(ClientClosedError):
        await conduit.dashboards.list()
    with pytest.raises(ClientClosedError):
        await conduit.company("acme1").integrations()


# -- 1: a create that stalls past the client's timeout is done once ----------------------

STALL = 0.6  # seconds the server sits on the request before applying it
TIMEOUT = 0.3  # the client gives up on it after this


def stalling_client(fake: FakeConduit) -> Conduit:
    """Real time throughout: the client times out for real, and gives a lost attempt
    a real second to land before looking again."""
    return against(fake, timeout=TIMEOUT, retry=RetryPolicy(settle_delay=1.0, jitter=lambda: 0.0))


@pytest.mark.parametrize("borrowed", [False, True], ids=["own session", "borrowed session"])
async def test_the_clients_timeout_holds_on_its_own_session_and_on_a_borrowed_one(
    fake: FakeConduit, borrowed: bool
) -> None:
    # The session the client makes carries its timeout; a borrowed one has aiohttp's
    # default (5 minutes), so the client must pass its own with each request.
    fake.faults.script(LIST_DASHBOARDS, [Fault.latency(30.0)])
    async with aiohttp.ClientSession() as mine:
        options: dict[str, Any] = {"session": mine} if borrowed else {}
        retry = RetryPolicy(attempts=1)
        async with against(fake, timeout=TIMEOUT, retry=retry, **options) as conduit:
            started = time.monotonic()
            with pytest.raises(ConduitTimeoutError):
                await conduit.dashboards.list()
            assert time.monotonic() - started < 5.0


async def test_a_workspace_create_that_stalls_past_the_timeout_is_created_once(
    fake: FakeConduit,
) -> None:
    fake.faults.script(CREATE_WORKSPACE, [Fault.latency(STALL)])
    async with stalling_client(fake) as conduit:
        created = await conduit.workspaces.create("Acme", ext_id="crm-1")
        await asyncio.sleep(STALL)  # any attempt still stalled lands meanwhile
    assert fake.stats.workspaces_created_by_ext_id == {"crm-1": 1}
    assert fake.stats.count(CREATE_WORKSPACE) == 1  # looked for, never sent again
    assert [w.id for w in fake.workspaces.values()] == [created.id]
    assert (created.name, created.ext_id) == ("Acme", "crm-1")


async def test_a_workspace_create_without_ext_id_that_stalls_is_unknown_not_repeated(
    fake: FakeConduit,
) -> None:
    fake.faults.script(CREATE_WORKSPACE, [Fault.latency(STALL)])
    async with stalling_client(fake) as conduit:
        with pytest.raises(OutcomeUnknownError):
            await conduit.workspaces.create("Acme")
        await asyncio.sleep(STALL)  # the stalled attempt lands meanwhile
    assert fake.stats.count(CREATE_WORKSPACE) == 1
    assert fake.stats.workspaces_created == 1
    assert len(fake.workspaces) == 1


async def test_a_stalled_clone_in_provision_leaves_one_copy_per_workspace(
    fake: FakeConduit,
) -> None:
    template = next(d for d in fake.dashboards.values() if d.workspace is None)
    fake.faults.script(CLONE, [Fault.latency(STALL), Fault.latency(STALL)])
    rows = [WorkspaceSpec("Acme", "crm-1"), WorkspaceSpec("Globex", "crm-2")]
    async with stalling_client(fake) as conduit:
        results = [r async for r in conduit.workspaces.provision(rows, clone_dashboards=[1])]
        await asyncio.sleep(STALL)  # any attempt still stalled lands meanwhile
    assert fake.stats.dashboards_cloned == 2
    for result in results:
        assert result.outcome == "created", result
        assert result.workspace is not None
        copies = [
            d
            for d in fake.dashboards.values()
            if d.workspace == result.workspace.id and d.name == template.name
        ]
        assert len(copies) == 1, copies
        assert set(result.share_urls) == {1}
    assert fake.stats.workspaces_created_by_ext_id == {"crm-1": 1, "crm-2": 1}


# -- 3: an ext_id that is already in use --------------------------------------------------


async def test_creating_a_workspace_with_an_ext_id_in_use_is_refused_before_sending(
    fake: FakeConduit, clock: ManualClock
) -> None:
    existing = fake.add_workspace("Acme", ext_id="crm-1")
    async with against(fake, clock) as conduit:
        with pytest.raises(ValidationError) as caught:
            await conduit.workspaces.create("Acme again", ext_id="crm-1")
        assert str(existing.id) in str(caught.value)
        assert "allow_duplicate_ext_id" in str(caught.value)
        assert fake.stats.count(CREATE_WORKSPACE) == 0
        # Once listed, the cache answers: still refused, still nothing sent.
        with pytest.raises(ValidationError):
            await conduit.workspaces.create("Acme again", ext_id="crm-1")
        assert fake.stats.count(CREATE_WORKSPACE) == 0
        # Another ext_id goes through.
        await conduit.workspaces.create("Globex", ext_id="crm-2")
        assert fake.stats.count(CREATE_WORKSPACE) == 1


async def test_a_duplicate_ext_id_is_created_when_explicitly_allowed(
    fake: FakeConduit, clock: ManualClock
) -> None:
    existing = fake.add_workspace("Acme", ext_id="crm-1")
    async with against(fake, clock) as conduit:
        second = await conduit.workspaces.create(
            "Acme again", ext_id="crm-1", allow_duplicate_ext_id=True
        )
    assert second.id != existing.id
    assert sorted(w.id for w in fake.workspaces.values() if w.ext_id == "crm-1") == sorted(
        [existing.id, second.id]
    )


async def test_a_lookup_by_an_ext_id_two_workspaces_share_names_both(
    fake: FakeConduit, clock: ManualClock
) -> None:
    first = fake.add_workspace("Acme", ext_id="crm-1")
    async with against(fake, clock) as conduit:
        second = await conduit.workspaces.create(
            "Acme again", ext_id="crm-1", allow_duplicate_ext_id=True
        )
        with pytest.raises(AmbiguousWorkspaceError) as caught:
            await conduit.workspace(ext_id="crm-1").get()
        assert caught.value.workspace_ids == tuple(sorted([first.id, second.id]))
        assert str(first.id) in str(caught.value) and str(second.id) in str(caught.value)
        with pytest.raises(AmbiguousWorkspaceError):
            await conduit.workspace(ext_id="crm-1").dashboards.list()
        # A fresh client (nothing cached) finds the same from its listing.
    async with against(fake, clock) as fresh:
        with pytest.raises(AmbiguousWorkspaceError):
            await fresh.workspace(ext_id="crm-1").get()
        # And a third create with that ext_id is refused naming both.
        with pytest.raises(ValidationError) as refused:
            await fresh.workspaces.create("Acme thrice", ext_id="crm-1")
        assert str(first.id) in str(refused.value) and str(second.id) in str(refused.value)


# -- with_options(max_wait=): fail fast rather than sleep ---------------------------------


async def test_max_wait_gives_up_on_a_long_retry_after_without_sleeping(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    http.get(V2 + "dashboards/", status=429, headers={"Retry-After": "30"})
    hurried = conduit.with_options(max_wait=0.5)
    with pytest.raises(RateLimitError) as caught:
        await hurried.dashboards.list()
    assert caught.value.retry_after == 30.0  # for the caller to show or schedule by
    assert vt.sleeps == []
    assert len(http.sent) == 1
    assert (hurried.retry.max_wait, conduit.retry.max_wait) == (0.5, None)
    assert hurried.requests_sent == conduit.requests_sent == 1  # one session shared


async def test_max_wait_counts_every_wait_of_the_call(vt: VirtualTime, http: Recorder) -> None:
    http.get(V2 + "dashboards/", status=503, repeat=True)
    async with make_conduit(vt, retry=RetryPolicy(sleep=vt.sleep, jitter=lambda: 1.0)) as c:
        with pytest.raises(ServerError):
            await c.with_options(max_wait=1.0).dashboards.list()
    assert vt.sleeps == [0.5]  # 0.5 then 1.0 more would be 1.5 s, over the 1 s allowed
    assert len(http.sent) == 2


async def test_max_wait_does_not_queue_behind_a_pause_longer_than_it(
    vt: VirtualTime, http: Recorder
) -> None:
    gate = asyncio.Event()
    sleeping = asyncio.Event()

    async def sleep(seconds: float) -> None:
        vt.sleeps.append(seconds)
        sleeping.set()
        await gate.wait()
        vt.now += seconds

    http.get(V2 + "dashboards/", status=429, headers={"Retry-After": "30"})
    http.get(V2 + "dashboards/", payload=[{"id": 1, "name": "sent at once"}])
    http.get(V2 + "dashboards/", payload=[])
    async with make_conduit(vt, retry=RetryPolicy(sleep=sleep, jitter=lambda: 0.5)) as conduit:
        patient = asyncio.create_task(conduit.dashboards.list())
        await sleeping.wait()  # the 429 has paused the client
        assert conduit.paused_for == 30.0
        # A person is waiting: the call neither sleeps out the pause nor fails for it.
        interactive = await conduit.with_options(max_wait=5.0).dashboards.list()
        assert [d.name for d in interactive] == ["sent at once"]
        assert len(http.sent) == 2
        assert conduit.paused_for == 30.0  # the patient callers stay paused
        gate.set()
        assert await patient == []
    assert vt.sleeps == [30.0]


async def test_two_concurrent_creates_with_one_ext_id_make_one_workspace(
    fake: FakeConduit, clock: ManualClock
) -> None:
    async with against(fake, clock) as conduit:
        made = await asyncio.gather(
            conduit.workspaces.create("Acme", ext_id="crm-1"),
            conduit.workspaces.create("Acme too", ext_id="crm-1"),
            return_exceptions=True,
        )
    assert sorted(type(m).__name__ for m in made) == ["ValidationError", "Workspace"]
    assert fake.stats.workspaces_created_by_ext_id == {"crm-1": 1}
