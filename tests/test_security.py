"""Security: no token ever leaks, and none is ever sent where it should not go.

- Every token the fake server issued (organization, Link APP, workspace and
  company tokens, revoked ones included) is searched for in everything a user
  or an operator can see after driving every code path: reprs and strs of all
  returned objects, every exception (message, attributes, traceback), every
  log record at DEBUG from any logger, every warning, and the CLI's output.
- `Authorization` never follows a redirect to another origin.
- A non-HTTPS base URL is refused unless its host is loopback or the caller
  allows it, however the URL tries to dress up its host.
- The CLI refuses a token file other users can read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_hostile_server import Handler, HostileServer
from test_soak import COMPANY_TOKEN, assert_no_token, cli_env, fake_server_process

from conduit_async import (
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    CompanySpec,
    Conduit,
    ConduitError,
    ConduitTimeoutError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationError,
    WorkspaceSpec,
)
from conduit_async.testing import FakeConduit, FakeServerInfo, Fault, ManualClock

# -- every code path, then a search for every token ----------------------------------------


class Evidence:
    """Everything a user or operator could see, and every token that must not be in it."""

    def __init__(self, fake: FakeConduit) -> None:
        self.fake = fake
        self.texts: list[str] = []
        self.tokens: set[str] = set()
        self.errors: list[BaseException] = []
        self.snapshot()

    def snapshot(self) -> None:
        """Remember every token the fake knows now (revoked ones leave its table)."""
        self.tokens.update(self.fake.issued_tokens())

    def see(self, obj: Any) -> None:
        self.texts += [repr(obj), str(obj)]
        if isinstance(obj, (list, tuple)):
            for item in obj:
                self.see(item)
        if isinstance(obj, BaseException):
            self.errors.append(obj)
            self.texts.append("".join(traceback.format_exception(obj)))
            self.texts.append(repr(vars(obj)))
            for value in vars(obj).values():
                if isinstance(value, BaseException):
                    self.see(value)

    async def call(
        self, awaitable: Awaitable[Any], *, raises: type[BaseException] | None = None
    ) -> Any:
        """Await; see the result or the exception; check it was the expected outcome."""
        try:
            result = await awaitable
        except ConduitError as exc:
            self.see(exc)
            assert raises is not None and isinstance(exc, raises), repr(exc)
            return exc
        finally:
            self.snapshot()
        assert raises is None, f"expected {raises}, got {result!r}"
        self.see(result)
        return result


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeConduit]:
    async with FakeConduit(clock=clock, token_ttl=600) as server:
        yield server


def connect(fake: FakeConduit, clock: ManualClock, **kwargs: Any) -> Conduit:
    kwargs.setdefault("token", fake.org_token)
    kwargs.setdefault("link_token", fake.link_token)
    return Conduit(
        base_url=fake.base_url,
        link_base_url=fake.link_base_url,
        clock=clock,
        retry=RetryPolicy(sleep=clock.sleep),
        timeout=0.3,
        seed=3,
        **kwargs,
    )


async def settle(conduit: Conduit) -> None:
    for _ in range(400):
        if conduit.tokens.inflight == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("token fetches did not finish")


async def drive_everything(fake: FakeConduit, clock: ManualClock, ev: Evidence) -> None:
    call = ev.call
    faults = fake.faults
    bogus_org, bogus_link = "org_BOGUS0123456789abcdef", "link_BOGUS0123456789abcdef"
    ev.tokens.update({bogus_org, bogus_link})

    conduit = connect(fake, clock)
    ev.see(conduit)

    # Workspaces and dashboards, with the organization and workspace tokens.
    ws = await call(conduit.workspaces.create("Workspace 1", ext_id="crm1"))
    ws2 = await call(conduit.workspaces.create("Workspace 2"))
    await call(conduit.workspaces.list())
    clone = await call(conduit.dashboards.clone(1, workspace=ws.id, name="Sales"))
    await call(conduit.dashboards.list())
    await call(conduit.dashboards.share_url(1))
    view = conduit.workspace(ws.id)
    ev.see(view)
    await call(view.get())
    await call(view.dashboards.list())
    await call(view.dashboards.share_url(clone.id))
    await call(conduit.workspace(ext_id="crm1").dashboards.list())
    # A revoked workspace token: 401, one lookup, retried with the new token.
    fake.revoke_token(ws.token)
    await call(view.dashboards.list())
    await call(conduit.workspaces.disable(ws2.id))

    # Companies with the Link APP token, and a company's own calls with its token.
    company = await call(conduit.companies.create("acme1", name="Acme", page_enabled=True))
    await call(conduit.companies.get("ACME1"))
    await call(conduit.companies.update("acme1", name="Acme Inc", page_enabled=False))
    await call(conduit.companies.list())
    acme = conduit.company("acme1")
    ev.see(acme)
    ev.see(conduit.tokens.store.get("acme1"))
    integrations = await call(acme.integrations())
    await call(acme.connect_url(2))
    await call(acme.data_lake(integration=1, date_from="2024-01-01", date_to="2024-01-03"))
    await call(acme.delete_credential(integrations[0].credentials[0].id))
    # A revoked company token: 401, one refresh, retried.
    fake.revoke_token(await acme.token())
    await call(acme.integrations())

    # Token refresh: in the background (half-life), then in the foreground (past expiry).
    clock.advance(350)
    await call(acme.integrations())
    await settle(conduit)
    clock.advance(700)
    await call(acme.integrations())
    # A background refresh that fails is logged (a warning) and retried later.
    clock.advance(350)
    faults.script("GET /link/company/{cid}/", [Fault.status(500)] * 3)
    await call(acme.integrations())
    await settle(conduit)
    faults.clear()

    # Errors of every class.
    await call(acme.data_lake(integration=1, date_from="2024-02-01", date_to="2024-01-01"),
               raises=BadRequestError)  # fmt: skip
    await call(conduit.companies.create("acme1"), raises=ConflictError)
    await call(conduit.companies.get("nosuch"), raises=NotFoundError)
    await call(conduit.dashboards.share_url(999), raises=NotFoundError)
    await call(conduit.workspace(999).get(), raises=NotFoundError)
    await call(conduit.company("nosuch").integrations(), raises=NotFoundError)
    fake.organization_name_configured = False
    await call(conduit.workspaces.create("W3"), raises=PermissionDeniedError)
    fake.organization_name_configured = True
    fake.white_label_configured = False
    await call(conduit.dashboards.clone(1, workspace=ws.id), raises=PermissionDeniedError)
    fake.white_label_configured = True
    for route, fault, error in [
        ("GET /v2/dashboards/", Fault.status(429, retry_after=1), RateLimitError),
        ("GET /v2/dashboards/", Fault.status(500), ServerError),
        ("GET /v2/dashboards/", Fault.status(502), ServerError),
        ("GET /v2/dashboards/", Fault.status(503, retry_after="garbage"), ServerError),
        ("GET /v2/dashboards/", Fault.reset(), TransportError),
        ("GET /v2/dashboards/", Fault.latency(1.0), ConduitTimeoutError),
    ]:
        # Six: aiohttp itself retries a GET once on a reused connection that was reset.
        faults.script(route, [fault] * 6)
        await call(conduit.dashboards.list(), raises=error)
    # Hostile error bodies that echo tokens back: the sent one, and others in token fields.
    org, link, ctoken = fake.org_token, fake.link_token, company.api_token.token
    for body in [
        f"<html><body>Unauthorized: Bearer {org}</body></html>",
        f'{{"code": "{org}", "message": "bad token {org}"}}',
        f'{{"code": "E1", "message": "no", "api_token": {{"token": "{ctoken}"}}, '
        f'"link_token": "{link}"}}',
        f'{{"code": "E2", "message": {{"api_token": {{"token": "{ctoken}"}}}}}}',
        f'{{"code": {{"token": "{link}"}}, "message": [{{"Token": "{ctoken}"}}]}}',
    ]:
        faults.script("GET /v2/dashboards/", [Fault.status(500, body=body)] * 3)
        await call(conduit.dashboards.list(), raises=ServerError)
    # Retries that end well, and lost responses that are reconciled or reported.
    # (Two faults for three attempts: the SDK makes every resend itself; aiohttp's own
    # silent resend after a reset, which once hid one of these, is off.)
    faults.script("GET /link/company/{cid}/", [Fault.reset(), Fault.latency(1.0)])
    await call(conduit.companies.get("acme1"))
    faults.script("GET /link/company/{cid}/", [Fault.status(429, retry_after=2), Fault.reset()])
    await call(conduit.companies.get("acme1"))
    faults.script("POST /link/company/", [Fault.lost()])
    await call(conduit.companies.create("beta2", name="Beta"))
    faults.script("POST /link/company/", [Fault.status(503), Fault.status(503)])
    await call(conduit.companies.create("gamma3"))
    faults.script("POST /link/company/", [Fault.latency(1.0)])
    await call(conduit.companies.create("delta4"))
    faults.script("POST /v2/workspaces/", [Fault.lost()])
    await call(conduit.workspaces.create("W4"), raises=OutcomeUnknownError)
    faults.script("POST /v2/workspaces/", [Fault.lost()])
    await call(conduit.workspaces.create("W5", ext_id="crm5"))
    faults.script("POST /v2/dashboards/{dashboard_id}/clone/", [Fault.lost()])
    await call(conduit.dashboards.clone(1, workspace=ws.id), raises=OutcomeUnknownError)
    faults.script("POST /link/company/{cid}/", [Fault.reset()])
    await call(conduit.companies.update("acme1", name="Acme again"))

    # Bulk provisioning: created, updated, unchanged and failed rows, and their JSON form.
    faults.script("POST /link/company/", [Fault.lost(), Fault.status(503)])
    company_rows = [
        CompanySpec("acme1", name="Acme renamed"),
        CompanySpec("beta2", name="Beta"),
        CompanySpec("bulk5", name="Bulk", page_enabled=False),
        CompanySpec("bad id"),
        {"id": "bulk6", "name": "Six"},
    ]
    outcomes = set()
    # One worker: the lost create and the 503 land on acme1, whose name differs (updated).
    async for result in conduit.companies.provision(company_rows, concurrency=1):
        ev.see(result)
        ev.see(json.dumps(result.to_dict()))
        outcomes.add(result.outcome)
    async for ws_result in conduit.workspaces.provision(
        [WorkspaceSpec("Workspace 1", "crm1"), WorkspaceSpec("Bulk WS", "crm9")],
        clone_dashboards=[1, 2],
    ):
        ev.see(ws_result)
        ev.see(json.dumps(ws_result.to_dict()))
        outcomes.add(ws_result.outcome)
    assert outcomes == {"created", "updated", "unchanged", "failed"}
    ev.snapshot()

    # Bad input, bad configuration, wrong tokens, a closed client.
    await call(conduit.companies.create("../x"), raises=ValidationError)
    wrong = connect(fake, clock, token=bogus_org, link_token=bogus_link)
    await call(wrong.companies.get("acme1"), raises=AuthenticationError)
    await call(wrong.workspaces.list(), raises=AuthenticationError)
    ev.see(wrong)
    await wrong.close()
    swapped = connect(fake, clock, token=fake.link_token, link_token=fake.org_token)
    await call(swapped.dashboards.list(), raises=PermissionDeniedError)
    await call(swapped.companies.list(), raises=PermissionDeniedError)
    await swapped.close()
    missing = connect(fake, clock, token="", link_token="")
    await call(missing.companies.get("acme1"), raises=ConfigurationError)
    await missing.close()
    for obj in (conduit.tokens, conduit.tokens.store, conduit._session, conduit.companies,
                conduit.workspaces, conduit.dashboards, conduit.tokens.stats):  # fmt: skip
        ev.see(obj)
    await conduit.close()
    await call(conduit.companies.get("acme1"), raises=ClientClosedError)
    ev.see(conduit)


async def test_no_token_in_reprs_errors_logs_or_warnings(
    fake: FakeConduit, clock: ManualClock, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    for name in ("CONDUIT_TOKEN", "CONDUIT_LINK_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.DEBUG)  # every logger: ours, aiohttp's, asyncio's
    ev = Evidence(fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await drive_everything(fake, clock, ev)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        ev.texts.append(formatter.format(record))
    ev.texts += [str(w.message) for w in caught]

    # The run did reach the paths it claims to: refreshes, refusals, failures, warnings.
    kinds = {type(e).__name__ for e in ev.errors}
    assert kinds >= {
        "BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError",
        "ConflictError", "RateLimitError", "ServerError", "TransportError",
        "ConduitTimeoutError", "OutcomeUnknownError", "ValidationError",
        "ConfigurationError", "ClientClosedError",
    }  # fmt: skip
    assert fake.stats.count("GET /link/credentials/", 401) == 1
    assert fake.stats.count("GET /v2/dashboards/", 401) == 1
    assert any(r.levelno == logging.WARNING and "refresh" in r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert fake.stats.companies_created.get("beta2") == 1
    company_tokens = [t for t in ev.tokens if t.startswith("ct_")]
    assert len(company_tokens) >= 8
    assert any(t.startswith("wt_") for t in ev.tokens)
    assert fake.stats.expired_token_requests == 0

    haystack = "\n".join(ev.texts)
    leaked = [where(t, haystack) for t in sorted(ev.tokens) if t in haystack]
    assert leaked == [], f"{len(leaked)} tokens leaked:\n" + "\n".join(leaked)
    # Not even a recognisable piece of one (a cut excerpt could leave a token's head).
    heads = [where(t[:-6], haystack) for t in sorted(ev.tokens) if t[:-6] in haystack]
    assert heads == [], "\n".join(heads)


def where(token: str, haystack: str) -> str:
    """Where `token` shows up, with the token itself cut to a hint."""
    at = haystack.index(token)
    context = haystack[max(0, at - 200) : at].replace("\n", " | ")
    return f"{token[:6]}… after: {context!r}"


# -- redirects ------------------------------------------------------------------------------


TOKEN = "org_REDIRECT_SECRET_5b1e"
LINK_TOKEN = "link_REDIRECT_SECRET_77aa"


@pytest.fixture
async def origin() -> AsyncIterator[HostileServer]:
    """The server the client is configured for; it records every request it gets."""
    server = HostileServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def elsewhere() -> AsyncIterator[HostileServer]:
    """Another origin (another port of 127.0.0.1), which must never see a request."""
    server = HostileServer()
    await server.start()
    yield server
    await server.close()


def redirect(status: int, location: str) -> Handler:
    async def reply(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/moved/"):
            return web.json_response([])
        return web.Response(status=status, headers={"Location": location})

    return reply


def against(server: HostileServer, delays: list[float] | None = None) -> Conduit:
    async def sleep(seconds: float) -> None:
        if delays is not None:
            delays.append(seconds)

    return Conduit(
        TOKEN,
        LINK_TOKEN,
        base_url=server.url + "v2/",
        link_base_url=server.url + "link/",
        retry=RetryPolicy(sleep=sleep),
    )


def other_origins(origin: HostileServer, elsewhere: HostileServer) -> list[str]:
    port = origin.url.rsplit(":", 1)[1].strip("/")
    return [
        elsewhere.url + "v2/dashboards/",  # another port
        f"http://localhost:{port}/v2/dashboards/",  # another host name, same port
        f"https://127.0.0.1:{port}/v2/dashboards/",  # another scheme
        "//" + elsewhere.url.split("//", 1)[1] + "v2/dashboards/",  # scheme-relative
    ]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", range(4), ids=["port", "host", "scheme", "scheme-relative"])
async def test_authorization_never_follows_a_redirect_to_another_origin(
    origin: HostileServer, elsewhere: HostileServer, status: int, target: int
) -> None:
    location = other_origins(origin, elsewhere)[target]
    origin.handler = redirect(status, location)
    async with against(origin) as conduit:
        with pytest.raises(ConduitError) as caught:
            await conduit.dashboards.list()
        with pytest.raises(ConduitError) as caught_post:
            await conduit.companies.create("acme1")
    assert elsewhere.seen == []  # not one request, with or without the header
    # Refused, not retried: both calls are one request each at the origin.
    assert isinstance(caught.value, RedirectError)
    assert isinstance(caught_post.value, RedirectError)
    assert len(origin.seen) == 2
    assert "another origin" in str(caught.value)
    assert "Authorization" in str(caught.value)
    assert "another origin" in str(caught_post.value)
    assert TOKEN not in str(caught.value) and LINK_TOKEN not in str(caught_post.value)
    assert set(origin.authorizations) <= {f"Bearer {TOKEN}", f"Bearer {LINK_TOKEN}"}


async def test_a_same_origin_redirect_chain_that_then_leaves_is_refused_at_the_exit(
    origin: HostileServer, elsewhere: HostileServer
) -> None:
    async def reply(request: web.Request) -> web.StreamResponse:
        if request.path == "/v2/dashboards/":
            return web.Response(status=307, headers={"Location": "/hop/"})
        return web.Response(status=302, headers={"Location": elsewhere.url + "v2/dashboards/"})

    origin.handler = reply
    async with against(origin) as conduit:
        with pytest.raises(RedirectError, match="another origin"):
            await conduit.dashboards.list()
    assert elsewhere.seen == []
    assert ("GET", "/hop/") in [(m, p) for m, p, _, _ in origin.seen]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
async def test_a_same_origin_redirect_is_followed_with_the_token(
    origin: HostileServer, elsewhere: HostileServer, status: int, absolute: bool
) -> None:
    location = (origin.url if absolute else "/") + "moved/dashboards/"
    origin.handler = redirect(status, location)
    async with against(origin) as conduit:
        assert await conduit.dashboards.list() == []
    assert [(m, p) for m, p, _, _ in origin.seen] == [
        ("GET", "/v2/dashboards/"),
        ("GET", "/moved/dashboards/"),
    ]
    assert origin.authorizations == [f"Bearer {TOKEN}"] * 2
    assert elsewhere.seen == []


@pytest.mark.parametrize("status", [307, 308])
async def test_a_same_origin_307_or_308_of_a_post_keeps_its_body(
    origin: HostileServer, status: int
) -> None:
    async def reply(request: web.Request) -> web.StreamResponse:
        if request.path == "/link/company/":
            return web.Response(status=status, headers={"Location": "/link/company/v2/"})
        return web.json_response(
            {
                "id": "acme1",
                "name": None,
                "created_at": "2024-01-01T00:00:00Z",
                "link_page": {"url": None, "enabled": False},
                "api_token": {"token": "ct_x", "expires_at": 4_000_000_000},
            }
        )

    origin.handler = reply
    async with against(origin) as conduit:
        assert (await conduit.companies.create("acme1")).id == "acme1"
    assert [(m, p, b) for m, p, _, b in origin.seen] == [
        ("POST", "/link/company/", b'{"id":"acme1"}'),
        ("POST", "/link/company/v2/", b'{"id":"acme1"}'),
    ]
    assert origin.authorizations == [f"Bearer {LINK_TOKEN}"] * 2


async def test_redirect_loops_end(origin: HostileServer) -> None:
    origin.handler = redirect(302, "/v2/dashboards/")
    async with against(origin, delays=[]) as conduit:
        with pytest.raises(RedirectError, match="redirects"):
            await conduit.dashboards.list()
    # One request and five hops, never retried: following again would loop again.
    assert len(origin.seen) == 6


# -- plain HTTP ------------------------------------------------------------------------------

REFUSED = [
    "http://api.getconduit.app/v2/",
    "http://10.0.0.1/v2/",
    "http://0.0.0.0:8080/v2/",
    "http://[::2]/v2/",
    "http://[fe80::1]/v2/",
    "http://localhost.evil.test/v2/",
    "http://127.0.0.1.evil.test/v2/",
    "http://127.0.0.1@evil.test/v2/",
    "http://localhost:1@evil.test/v2/",
    # The host is what comes before '#' or '?': "127.0.0.1" here is a fragment or query.
    "http://evil.test#@127.0.0.1/v2/",
    "http://evil.test?@127.0.0.1/v2/",
    "http://evil.test#@localhost/v2/",
    "http://evil.test:80#@[::1]/v2/",
]
ALLOWED = [
    "http://127.0.0.1/v2/",
    "http://127.0.0.1:8080/v2/",
    "http://localhost/v2/",
    "http://LocalHost:9/v2/",
    "http://[::1]/v2/",
    "http://[::1]:8080/v2/",
]
#: A user name or password in the authority: aiohttp would refuse every call (it cannot
#: combine them with the bearer header), and a password would show in reprs. Refused
#: whatever allow_insecure says.
WITH_CREDENTIALS = [
    "http://user@127.0.0.1:8080/v2/",
    "https://user:s3cr3t-pw@api.example.test/v2/",
    "http://127.0.0.1@evil.test/v2/",
    "http://localhost:1@evil.test/v2/",
]


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in (
        "CONDUIT_TOKEN",
        "CONDUIT_LINK_TOKEN",
        "CONDUIT_BASE_URL",
        "CONDUIT_LINK_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


@pytest.mark.parametrize("url", REFUSED)
@pytest.mark.parametrize("how", ["base_url", "link_base_url", "CONDUIT_LINK_BASE_URL"])
async def test_plain_http_to_anything_but_loopback_is_refused(
    no_env: pytest.MonkeyPatch, url: str, how: str
) -> None:
    kwargs: dict[str, Any] = {}
    if how.startswith("CONDUIT_"):
        no_env.setenv(how, url)
    else:
        kwargs[how] = url
    with pytest.raises(ConfigurationError) as caught:
        Conduit(TOKEN, LINK_TOKEN, **kwargs)
    if url in WITH_CREDENTIALS:
        assert "password" in str(caught.value)
        with pytest.raises(ConfigurationError):
            Conduit(TOKEN, LINK_TOKEN, allow_insecure=True, **kwargs)
        return
    assert "allow_insecure" in str(caught.value)
    assert TOKEN not in str(caught.value)
    allowed = Conduit(TOKEN, LINK_TOKEN, allow_insecure=True, **kwargs)
    assert url in (allowed.base_url, allowed.link_base_url)
    await allowed.close()


@pytest.mark.parametrize("url", ALLOWED)
async def test_plain_http_to_loopback_is_allowed(no_env: pytest.MonkeyPatch, url: str) -> None:
    async with Conduit(TOKEN, LINK_TOKEN, base_url=url, link_base_url=url) as conduit:
        assert conduit.base_url == url == conduit.link_base_url


async def test_https_is_always_allowed(no_env: pytest.MonkeyPatch) -> None:
    async with Conduit(TOKEN, base_url="https://conduit.example:8443/v2") as conduit:
        assert conduit.base_url == "https://conduit.example:8443/v2/"


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServerInfo]:
    """The fake server in a subprocess, shared by the CLI tests of this module."""
    with fake_server_process() as info:
        yield info


def start_cli(server: FakeServerInfo, *args: str, **env: str) -> subprocess.Popen[str]:
    """Start the CLI against `server`; `env` overrides (an empty value removes a variable)."""
    environ = {**cli_env(server), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "conduit_async", *args],
        env={k: v for k, v in environ.items() if v},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cli(server: FakeServerInfo, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return finish(start_cli(server, *args, **env))


NO_TOKENS = {"CONDUIT_TOKEN": "", "CONDUIT_LINK_TOKEN": ""}


def token_file(tmp_path: Path, server: FakeServerInfo, mode: int) -> Path:
    path = tmp_path / "conduit.env"
    path.write_text(f"CONDUIT_TOKEN={server.org_token}\nCONDUIT_LINK_TOKEN={server.link_token}\n")
    path.chmod(mode)
    return path


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=oct)
def test_a_token_file_others_can_read_is_refused(
    tmp_path: Path, server: FakeServerInfo, mode: int
) -> None:
    path = token_file(tmp_path, server, mode)
    before = server.fake_stats()["requests_total"]
    result = cli(server, "--token-file", str(path), "companies", "get", "acme1", **NO_TOKENS)
    assert result.returncode == 2, result.stderr
    assert "too open" in result.stderr
    assert f"chmod 600 {path}" in result.stderr
    assert f"{mode:04o}" in result.stderr
    assert_no_token(result.stdout + result.stderr, server)
    assert server.fake_stats()["requests_total"] == before  # refused before any request


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_a_private_token_file_is_used(tmp_path: Path, server: FakeServerInfo, mode: int) -> None:
    company = tmp_path / "one.csv"
    company.write_text("id,name\ntokenfile1,Token File\n")
    path = token_file(tmp_path, server, mode)
    made = cli(server, "--token-file", str(path), "provision", "companies", str(company), "-q",
               **NO_TOKENS)  # fmt: skip
    assert made.returncode == 0, made.stderr
    result = cli(server, "--token-file", str(path), "companies", "get", "TOKENFILE1", **NO_TOKENS)
    assert result.returncode == 0, result.stderr
    assert "tokenfile1" in result.stdout
    assert_no_token(made.stdout + made.stderr + result.stdout + result.stderr, server)


def test_no_token_in_cli_output(tmp_path: Path, server: FakeServerInfo) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id,name,page_enabled\nclitok1,A,true\nclitok2,B,false\nbad id,C,true\n")
    wrong = {"CONDUIT_LINK_TOKEN": "link_WRONG0123456789abcdef0123456"}
    commands: list[tuple[tuple[str, ...], dict[str, str]]] = [
        (("provision", "companies", str(rows), "--out", "-", "-q"), {}),
        (("--json", "provision", "companies", str(rows), "--out", "-", "-q"), {}),
        (("companies", "get", "clitok1"), {}),
        (("--json", "companies", "get", "clitok1"), {}),
        (("companies", "get", "nosuch"), {}),
        (("workspaces", "list"), {}),
        (("--json", "workspaces", "list"), {}),
        (("dashboards", "list"), {}),
        (("--json", "dashboards", "share", "1"), {}),
        (("dashboards", "share", "999"), {}),
        (("companies", "get", "clitok1"), wrong),
    ]
    first = cli(server, *commands[0][0])  # creates the companies the others look at
    runs = [first] + [finish(p) for p in [start_cli(server, *a, **e) for a, e in commands[1:]]]
    codes = [run.returncode for run in runs]
    # A failed row or a 404: 1; a refused token is a configuration problem: 2.
    assert codes == [1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 2], [r.stderr for r in runs]
    for run in runs:
        assert_no_token(run.stdout + run.stderr, server)
        assert wrong["CONDUIT_LINK_TOKEN"] not in run.stdout + run.stderr
    # The one command whose job is to print a token does, so the search above can see one.
    token = cli(server, "companies", "token", "clitok1")
    assert token.returncode == 0
    assert COMPANY_TOKEN.fullmatch(token.stdout.strip())
