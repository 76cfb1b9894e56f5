"""Contract tests of FakeConduit itself, spoken to over plain HTTP with a bare aiohttp
session, as any client would: the fake is checked against the spec here, so that the SDK
tests built on it can trust it.

Note on aiohttp's client: it silently sends an idempotent request (GET, DELETE) once more
when the connection drops before a response, so a dropped GET consumes two scripted
faults. The fault tests use POST where the count matters.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import attrs
import pytest
from multidict import CIMultiDictProxy

from conduit_async.testing import (
    ROUTE_KEYS,
    ExpiredTokenUse,
    FakeConduit,
    FakeServerProcess,
    Fault,
    FaultKind,
    ManualClock,
)
from conduit_async.testing.__main__ import main, serve

START = 1_800_000_000.0
_NO_BODY = object()


# -- helpers ---------------------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    body: Any
    """Parsed JSON, the text when the body is not JSON, or None when empty."""
    headers: CIMultiDictProxy[str]

    @property
    def code(self) -> Any:
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def date(self) -> float:
        """The ``Date`` header as Unix seconds."""
        return email.utils.parsedate_to_datetime(self.headers["Date"]).timestamp()


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: Any = _NO_BODY,
    *,
    data: bytes | None = None,
    params: dict[str, str] | None = None,
) -> Reply:
    """One request: ``body`` goes as JSON, ``data`` as raw bytes."""
    kwargs: dict[str, Any] = {
        "headers": {} if token is None else {"Authorization": f"Bearer {token}"},
        "params": params,
    }
    if body is not _NO_BODY:
        kwargs["json"] = body
    elif data is not None:
        kwargs["data"] = data
    async with http.request(method, url, **kwargs) as response:
        text = await response.text()
        parsed: Any = None
        if text:
            parsed = json.loads(text) if response.content_type == "application/json" else text
        return Reply(response.status, parsed, response.headers)


async def create_company(
    http: aiohttp.ClientSession, fake: FakeConduit, company_id: str, **fields: Any
) -> Reply:
    return await call(
        http, "POST", fake.link_base_url + "company/", fake.link_token, {"id": company_id, **fields}
    )


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


COMPANY_KEYS = {"id", "name", "created_at", "link_page", "api_token"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeConduit]:
    async with FakeConduit(clock=clock) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# -- ManualClock -----------------------------------------------------------------------


async def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock()
    assert clock() == 1_800_000_000.0
    clock.advance(1.5)
    assert clock() == 1_800_000_001.5
    await clock.sleep(600)
    assert clock() == 1_800_000_601.5
    await clock.sleep(-3)  # like asyncio.sleep: no wait, and no time travel
    assert clock() == 1_800_000_601.5
    clock.set(5.0)
    assert clock() == 5.0
    with pytest.raises(ValueError):
        clock.advance(-1)


# -- start-up, URLs, tokens ------------------------------------------------------------


async def test_urls_and_tokens(clock: ManualClock) -> None:
    fake = FakeConduit(clock=clock)
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    await fake.start()
    try:
        assert fake.url.startswith("http://127.0.0.1:") and fake.url.endswith("/")
        assert fake.base_url == fake.url + "v2/"
        assert fake.link_base_url == fake.url + "link/"
        assert fake.org_token.startswith("org_") and fake.link_token.startswith("link_")
        assert len(fake.org_token) > 30 and fake.org_token != fake.link_token
        assert fake.clock is clock
        with pytest.raises(RuntimeError):
            await fake.start()
    finally:
        await fake.close()
        await fake.close()  # twice is fine
    other = FakeConduit(org_token="org_fixed", link_token="link_fixed")
    assert (other.org_token, other.link_token) == ("org_fixed", "link_fixed")
    assert FakeConduit().org_token != FakeConduit().org_token


async def test_close_leaves_no_tasks_behind(clock: ManualClock) -> None:
    async with FakeConduit(clock=clock) as fake, aiohttp.ClientSession() as http:
        await create_company(http, fake, "acme1")
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- the spec's sample requests ----------------------------------------------------------


async def test_spec_samples_v2(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    v2, org = fake.base_url, fake.org_token
    created = await call(
        http, "POST", v2 + "workspaces/", org, {"name": "Workspace 1", "ext_id": "crm1"}
    )
    assert created.status == 200
    assert set(created.body) == {"id", "ext_id", "name", "token"}
    assert created.body["name"] == "Workspace 1" and created.body["ext_id"] == "crm1"
    assert created.body["token"].startswith("wt_")
    no_ext = await call(http, "POST", v2 + "workspaces/", org, {"name": "Workspace 2"})
    assert no_ext.body["ext_id"] is None

    listed = await call(http, "GET", v2 + "workspaces/", org)
    assert listed.status == 200 and listed.body == [created.body, no_ext.body]

    dashboards = await call(http, "GET", v2 + "dashboards/", org)
    assert dashboards.body == [
        {"id": 1, "name": "Sales Dashboard"},
        {"id": 2, "name": "Marketing Overview"},
        {"id": 3, "name": "Finance KPIs"},
    ]
    share = await call(http, "GET", v2 + "dashboards/1/share/", org)
    assert share.status == 200 and set(share.body) == {"url"}
    assert share.body["url"].startswith(fake.url)

    ws_id = created.body["id"]
    clone = await call(
        http,
        "POST",
        v2 + "dashboards/1/clone/",
        org,
        {"workspace": ws_id, "name": "Sales Dashboard"},
    )
    assert clone.status == 200 and set(clone.body) == {"id", "name", "url"}
    assert clone.body["name"] == "Sales Dashboard" and isinstance(clone.body["id"], int)

    disabled = await call(http, "DELETE", v2 + f"workspaces/{no_ext.body['id']}/", org)
    assert disabled.status == 204 and disabled.body is None


async def test_spec_samples_link(
    fake: FakeConduit, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    link, app = fake.link_base_url, fake.link_token
    created = await call(
        http,
        "POST",
        link + "company/",
        app,
        {"id": "1", "name": "My Client 1", "page_enabled": False},
    )
    assert created.status == 200 and set(created.body) == COMPANY_KEYS
    assert created.body["id"] == "1" and created.body["name"] == "My Client 1"
    assert created.body["created_at"] == "2027-01-15T08:00:00Z"
    assert created.body["link_page"] == {"url": None, "enabled": False}
    token = created.body["api_token"]
    assert set(token) == {"token", "expires_at"} and token["token"].startswith("ct_")
    assert token["expires_at"] == START + 600 and isinstance(token["expires_at"], int)

    got = await call(http, "GET", link + "company/1/", app)
    assert got.status == 200 and set(got.body) == COMPANY_KEYS
    assert got.body["api_token"]["token"] != token["token"]

    edited = await call(
        http, "POST", link + "company/1/", app, {"name": "Renamed", "page_enabled": True}
    )
    assert edited.status == 200 and edited.body["name"] == "Renamed"
    assert edited.body["link_page"]["enabled"] is True
    assert edited.body["link_page"]["url"].startswith(fake.url)

    listed = await call(http, "GET", link + "company/", app)
    assert listed.status == 200 and len(listed.body) == 1
    assert set(listed.body[0]) == COMPANY_KEYS
    assert "connections" not in listed.body[0]

    company_token = edited.body["api_token"]["token"]
    credentials = await call(http, "GET", link + "credentials/", company_token)
    assert credentials.status == 200
    assert [(i["id"], i["name"]) for i in credentials.body] == [
        (1, "Google Ads"),
        (2, "Facebook Ads"),
        (3, "Google Analytics"),
    ]
    for integration in credentials.body:
        assert set(integration) == {"id", "name", "credentials"}
    [credential] = credentials.body[0]["credentials"]
    assert set(credential) == {"name", "id", "created_at", "accounts"}
    assert set(credential["accounts"][0]) == {"name", "id", "native_id"}

    connect = await call(http, "GET", link + "credentials/connect/1/", company_token)
    assert connect.status == 200 and set(connect.body) == {"url"}

    lake = await call(
        http,
        "GET",
        link + "data_lake/",
        company_token,
        params={
            "integration": "1",
            "account": "1",
            "date_from": "2024-01-01",
            "date_to": "2024-01-02",
        },
    )
    assert lake.status == 200 and set(lake.body) == {"schema"}
    assert [row["date"] for row in lake.body["schema"]] == ["2024-01-01", "2024-01-02"]
    for row in lake.body["schema"]:
        assert set(row) == {"date", "url", "service_status", "data_status", "data_updated_at"}

    deleted = await call(http, "DELETE", link + f"credentials/{credential['id']}/", company_token)
    assert deleted.status == 204 and deleted.body is None


# -- authorization -----------------------------------------------------------------------

SPEC_ACCESS = {
    "GET /v2/workspaces/": {"org"},
    "POST /v2/workspaces/": {"org"},
    "DELETE /v2/workspaces/{workspace_id}/": {"org"},
    "GET /v2/dashboards/": {"org", "workspace"},
    "GET /v2/dashboards/{dashboard_id}/share/": {"org", "workspace"},
    "POST /v2/dashboards/{dashboard_id}/clone/": {"org"},
    "GET /link/company/": {"link"},
    "POST /link/company/": {"link"},
    "GET /link/company/{cid}/": {"link"},
    "POST /link/company/{cid}/": {"link"},
    "GET /link/credentials/": {"company"},
    "GET /link/credentials/connect/{integration_id}/": {"company"},
    "DELETE /link/credentials/{credential_id}/": {"company"},
    "GET /link/data_lake/": {"company"},
}


async def test_every_route_is_in_the_access_table() -> None:
    assert set(ROUTE_KEYS) == set(SPEC_ACCESS)


async def test_authorization_matrix(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    """Missing or unknown token: 401 everywhere; a token of the wrong kind: 403; the
    right kind gets past authorization."""
    fake.add_company("acme1")
    workspace = fake.add_workspace("Target")
    victim = fake.add_workspace("Victim")
    [credential] = fake.credentials("acme1")
    tokens = {
        "none": None,
        "bogus": "ct_" + "0" * 32,
        "link": fake.link_token,
        "workspace": workspace.token,
        "company": fake.issue_company_token("acme1").token,
        "org": fake.org_token,  # last, so its DELETE runs after the others were refused
    }
    requests: dict[str, tuple[str, Any, dict[str, str] | None]] = {
        "GET /v2/workspaces/": ("v2/workspaces/", _NO_BODY, None),
        "POST /v2/workspaces/": ("v2/workspaces/", {"name": "W"}, None),
        "DELETE /v2/workspaces/{workspace_id}/": (f"v2/workspaces/{victim.id}/", _NO_BODY, None),
        "GET /v2/dashboards/": ("v2/dashboards/", _NO_BODY, None),
        "GET /v2/dashboards/{dashboard_id}/share/": ("v2/dashboards/1/share/", _NO_BODY, None),
        "POST /v2/dashboards/{dashboard_id}/clone/": (
            "v2/dashboards/1/clone/",
            {"workspace": workspace.id},
            None,
        ),
        "GET /link/company/": ("link/company/", _NO_BODY, None),
        "POST /link/company/": ("link/company/", {"id": "new1"}, None),
        "GET /link/company/{cid}/": ("link/company/acme1/", _NO_BODY, None),
        "POST /link/company/{cid}/": ("link/company/acme1/", {"name": "A"}, None),
        "GET /link/credentials/": ("link/credentials/", _NO_BODY, None),
        "GET /link/credentials/connect/{integration_id}/": (
            "link/credentials/connect/2/",
            _NO_BODY,
            None,
        ),
        "DELETE /link/credentials/{credential_id}/": (
            f"link/credentials/{credential.id}/",
            _NO_BODY,
            None,
        ),
        "GET /link/data_lake/": (
            "link/data_lake/",
            _NO_BODY,
            {"integration": "1", "date_from": "2024-01-01", "date_to": "2024-01-01"},
        ),
    }
    for route, (path, body, params) in requests.items():
        method = route.split()[0]
        for kind, token in tokens.items():
            reply = await call(http, method, fake.url + path, token, body, params=params)
            where = f"{route} with {kind} token"
            if token is None or kind == "bogus":
                assert reply.status == 401, where
                assert reply.code in {"missing_token", "invalid_token"}, where
            elif kind in SPEC_ACCESS[route]:
                assert reply.status < 400 or reply.status == 404, (where, reply)
            else:
                assert (reply.status, reply.code) == (403, "forbidden"), where
                assert reply.body["message"], where


async def test_malformed_authorization_header_is_401(
    fake: FakeConduit, http: aiohttp.ClientSession
) -> None:
    for header in (fake.org_token, f"Basic {fake.org_token}", "Bearer", "Bearer "):
        async with http.get(fake.base_url + "workspaces/", headers={"Authorization": header}) as r:
            assert r.status == 401


async def test_workspace_token_sees_only_its_dashboards(
    fake: FakeConduit, http: aiohttp.ClientSession
) -> None:
    v2, org = fake.base_url, fake.org_token
    one = fake.add_workspace("One", ext_id="crm1")
    two = fake.add_workspace("Two", ext_id="crm2")
    assert (await call(http, "GET", v2 + "dashboards/", one.token)).body == []

    clone = await call(http, "POST", v2 + "dashboards/2/clone/", org, {"workspace": one.id})
    assert clone.body["name"] == "Marketing Overview"  # the source's name by default
    new_id = clone.body["id"]
    assert (await call(http, "GET", v2 + "dashboards/", one.token)).body == [
        {"id": new_id, "name": "Marketing Overview"}
    ]
    assert (await call(http, "GET", v2 + "dashboards/", two.token)).body == []
    assert len((await call(http, "GET", v2 + "dashboards/", org)).body) == 3
    assert fake.dashboards[new_id].workspace == one.id
    assert fake.stats.dashboards_cloned == 1

    # Share: a workspace token for that workspace's dashboards only, the organization
    # token for the organization's.
    assert (await call(http, "GET", v2 + f"dashboards/{new_id}/share/", one.token)).status == 200
    assert (
        await call(http, "GET", v2 + f"dashboards/{new_id}/share/", two.token)
    ).code == "not_found"
    assert (await call(http, "GET", v2 + "dashboards/1/share/", one.token)).status == 404
    assert (await call(http, "GET", v2 + f"dashboards/{new_id}/share/", org)).status == 404
    assert (await call(http, "GET", v2 + "dashboards/1/share/", org)).status == 200


async def test_clone_errors(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    v2, org = fake.base_url, fake.org_token
    workspace = fake.add_workspace("W")
    owned = fake.add_dashboard("Own", workspace=workspace.id)
    for body in (
        {},
        {"workspace": str(workspace.id)},
        {"workspace": True},
        {"workspace": 1, "name": 5},
    ):
        reply = await call(http, "POST", v2 + "dashboards/1/clone/", org, body)
        assert (reply.status, reply.code) == (400, "invalid_request"), body
    for path, body in (
        ("dashboards/999/clone/", {"workspace": workspace.id}),
        ("dashboards/abc/clone/", {"workspace": workspace.id}),
        (f"dashboards/{owned.id}/clone/", {"workspace": workspace.id}),  # not an org dashboard
        ("dashboards/1/clone/", {"workspace": 999}),
    ):
        reply = await call(http, "POST", v2 + path, org, body)
        assert (reply.status, reply.code) == (404, "not_found"), path


# -- company tokens: expiry, revocation ----------------------------------------------------


async def test_company_token_expires_after_ttl(
    fake: FakeConduit, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    created = await create_company(http, fake, "acme1")
    first = created.body["api_token"]
    assert first["expires_at"] == START + 600

    clock.advance(300)
    second = (await call(http, "GET", fake.link_base_url + "company/acme1/", fake.link_token)).body[
        "api_token"
    ]
    assert second["expires_at"] == START + 900

    clock.advance(299.5)  # half a second before the first token's end
    for token in (first["token"], second["token"]):
        assert (await call(http, "GET", fake.link_base_url + "credentials/", token)).status == 200

    clock.advance(0.5)  # exactly expires_at: expired
    refused = await call(http, "GET", fake.link_base_url + "credentials/", first["token"])
    assert (refused.status, refused.code) == (401, "token_expired")
    # The newer token is unaffected by the older one expiring.
    assert (
        await call(http, "GET", fake.link_base_url + "credentials/", second["token"])
    ).status == 200

    assert fake.stats.expired_token_requests == 1
    assert fake.stats.expired_token_log == [ExpiredTokenUse("GET /link/credentials/", START + 600)]

    clock.advance(300)
    assert (
        await call(http, "GET", fake.link_base_url + "credentials/", second["token"])
    ).status == 401
    assert fake.stats.expired_token_requests == 2
    assert fake.stats.tokens_issued == {"acme1": 2}


async def test_token_ttl_and_fractional_expiry(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    """A fractional clock gives whole-second expiry, truncated as a server storing whole
    seconds would: what the client is told is exactly when the token stops working."""
    clock.set(START + 0.75)
    async with FakeConduit(clock=clock, token_ttl=30) as fake:
        token = (await create_company(http, fake, "acme1")).body["api_token"]
        assert token["expires_at"] == START + 30 and isinstance(token["expires_at"], int)
        assert fake.issued_tokens()[token["token"]].expires_at == START + 30
        fake.token_ttl = 90.5
        got = await call(http, "GET", fake.link_base_url + "company/acme1/", fake.link_token)
        assert got.body["api_token"]["expires_at"] == START + 91
        with pytest.raises(ValueError):
            fake.token_ttl = 0
        clock.set(START + 29.99)
        credentials = fake.link_base_url + "credentials/"
        assert (await call(http, "GET", credentials, token["token"])).status == 200
        clock.set(START + 30)
        refused = await call(http, "GET", credentials, token["token"])
        assert (refused.status, refused.code) == (401, "token_expired")


async def test_revoked_tokens(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    v2, org = fake.base_url, fake.org_token
    company_token = (await create_company(http, fake, "acme1")).body["api_token"]["token"]
    fake.revoke_token(company_token)
    refused = await call(http, "GET", fake.link_base_url + "credentials/", company_token)
    assert (refused.status, refused.code) == (401, "invalid_token")

    workspace = fake.add_workspace("W")
    fake.revoke_token(workspace.token)
    assert (await call(http, "GET", v2 + "dashboards/", workspace.token)).status == 401
    # Looking the workspace up again gives a working token, as the spec promises.
    [listed] = (await call(http, "GET", v2 + "workspaces/", org)).body
    assert listed["id"] == workspace.id and listed["token"] != workspace.token
    assert (await call(http, "GET", v2 + "dashboards/", listed["token"])).status == 200

    with pytest.raises(KeyError):
        fake.revoke_token("nope")


# -- preconditions -------------------------------------------------------------------------


async def test_organization_name_precondition(
    fake: FakeConduit, http: aiohttp.ClientSession
) -> None:
    v2, org = fake.base_url, fake.org_token
    workspace = fake.add_workspace("W")
    fake.organization_name_configured = False
    refused = [
        ("POST", "workspaces/", org, {"name": "X"}),
        ("DELETE", f"workspaces/{workspace.id}/", org, _NO_BODY),
        ("GET", "dashboards/", workspace.token, _NO_BODY),
        ("GET", "dashboards/1/share/", workspace.token, _NO_BODY),
        ("POST", "dashboards/1/clone/", org, {"workspace": workspace.id}),
    ]
    for method, path, token, body in refused:
        reply = await call(http, method, v2 + path, token, body)
        assert (reply.status, reply.code) == (403, "organization_name_not_configured"), path
        assert "organization name" in reply.body["message"]
    # Calls that are not workspace-specific still work.
    assert (await call(http, "GET", v2 + "workspaces/", org)).status == 200
    assert (await call(http, "GET", v2 + "dashboards/", org)).status == 200
    assert (await call(http, "GET", v2 + "dashboards/1/share/", org)).status == 200
    assert fake.stats.workspaces_created == 0 and workspace.id in fake.workspaces

    fake.organization_name_configured = True
    assert (await call(http, "POST", v2 + "workspaces/", org, {"name": "X"})).status == 200


async def test_white_label_precondition(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    v2, org = fake.base_url, fake.org_token
    workspace = fake.add_workspace("W")
    fake.white_label_configured = False
    reply = await call(http, "POST", v2 + "dashboards/1/clone/", org, {"workspace": workspace.id})
    assert (reply.status, reply.code) == (403, "white_label_not_configured")
    assert "White-label" in reply.body["message"]
    assert (await call(http, "POST", v2 + "workspaces/", org, {"name": "X"})).status == 200
    assert (await call(http, "GET", v2 + "dashboards/", workspace.token)).status == 200
    fake.white_label_configured = True
    reply = await call(http, "POST", v2 + "dashboards/1/clone/", org, {"workspace": workspace.id})
    assert reply.status == 200


async def test_preconditions_from_constructor(http: aiohttp.ClientSession) -> None:
    async with FakeConduit(organization_name_configured=False) as fake:
        reply = await call(
            http, "POST", fake.base_url + "workspaces/", fake.org_token, {"name": "X"}
        )
        assert reply.code == "organization_name_not_configured"
    async with FakeConduit(white_label_configured=False) as fake:
        workspace = fake.add_workspace("W")
        reply = await call(
            http,
            "POST",
            fake.base_url + "dashboards/1/clone/",
            fake.org_token,
            {"workspace": workspace.id},
        )
        assert reply.code == "white_label_not_configured"


# -- validation ------------------------------------------------------------------------------


async def test_company_validation(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    bad_bodies: list[Any] = [
        {},
        {"id": ""},
        {"id": "a-b"},
        {"id": "acme 1"},
        {"id": "é1"},
        {"id": "x" * 1025},
        {"id": 123},
        {"id": "ok1", "name": "n" * 1025},
        {"id": "ok1", "name": 5},
        {"id": "ok1", "page_enabled": "yes"},
        [{"id": "ok1"}],
        "ok1",
    ]
    for body in bad_bodies:
        reply = await call(http, "POST", fake.link_base_url + "company/", fake.link_token, body)
        assert (reply.status, reply.code) == (400, "invalid_request"), body
        assert reply.body["message"]
    for raw in (b"{", b"", b"\xff"):
        reply = await call(http, "POST", fake.link_base_url + "company/", fake.link_token, data=raw)
        assert (reply.status, reply.code) == (400, "invalid_json"), raw
    assert fake.companies == {}

    longest = await create_company(http, fake, "X" * 1024, name="n" * 1024)
    assert longest.status == 200
    unnamed = await create_company(http, fake, "bare1")
    assert unnamed.body["name"] is None and unnamed.body["link_page"]["enabled"] is True


async def test_company_ids_ignore_case(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    assert (await create_company(http, fake, "Acme1", name="Acme")).status == 200
    duplicate = await create_company(http, fake, "ACME1")
    assert (duplicate.status, duplicate.code) == (409, "company_exists")
    got = await call(http, "GET", fake.link_base_url + "company/aCmE1/", fake.link_token)
    assert got.status == 200 and got.body["id"] == "Acme1"
    assert list(fake.companies) == ["acme1"]
    assert fake.stats.companies_created == {"acme1": 1}
    assert fake.stats.tokens_issued == {"acme1": 2}


async def test_edit_company(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    link, app = fake.link_base_url, fake.link_token
    created = await create_company(http, fake, "acme1", name="Acme")
    page_url = created.body["link_page"]["url"]
    assert page_url is not None

    off = await call(http, "POST", link + "company/acme1/", app, {"page_enabled": False})
    assert off.body["link_page"] == {"url": None, "enabled": False}
    assert off.body["name"] == "Acme"  # untouched fields stay
    on = await call(
        http, "POST", link + "company/ACME1/", app, {"page_enabled": True, "name": None}
    )
    assert on.body["link_page"] == {"url": page_url, "enabled": True}
    assert on.body["name"] is None
    assert fake.companies["acme1"].page_enabled is True

    other = await create_company(http, fake, "other1")
    assert other.body["link_page"]["url"] != page_url  # unique per company

    assert (await call(http, "POST", link + "company/nobody/", app, {"name": "x"})).status == 404
    assert (await call(http, "GET", link + "company/nobody/", app)).code == "not_found"
    for body in ({"page_enabled": 1}, {"name": "n" * 1025}):
        assert (await call(http, "POST", link + "company/acme1/", app, body)).status == 400


async def test_workspace_validation_and_duplicate_ext_ids(
    fake: FakeConduit, http: aiohttp.ClientSession
) -> None:
    v2, org = fake.base_url, fake.org_token
    for body in ({}, {"name": ""}, {"name": 5}, {"name": "W", "ext_id": 5}, {"name": "n" * 1025}):
        reply = await call(http, "POST", v2 + "workspaces/", org, body)
        assert (reply.status, reply.code) == (400, "invalid_request"), body
    first = await call(http, "POST", v2 + "workspaces/", org, {"name": "W", "ext_id": "crm1"})
    second = await call(http, "POST", v2 + "workspaces/", org, {"name": "W", "ext_id": "crm1"})
    # ext_id is not unique on the server: the reason blind retries of create are dangerous.
    assert first.status == second.status == 200
    assert first.body["id"] != second.body["id"] and first.body["token"] != second.body["token"]
    assert fake.stats.workspaces_created == 2
    assert fake.stats.workspaces_created_by_ext_id == {"crm1": 2}


async def test_disable_workspace(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    v2, org = fake.base_url, fake.org_token
    keep = fake.add_workspace("Keep")
    gone = fake.add_workspace("Gone")
    reply = await call(http, "DELETE", v2 + f"workspaces/{gone.id}/", org)
    assert reply.status == 204 and reply.body is None
    assert [w["id"] for w in (await call(http, "GET", v2 + "workspaces/", org)).body] == [keep.id]
    assert (await call(http, "GET", v2 + "dashboards/", gone.token)).status == 401
    assert (await call(http, "DELETE", v2 + f"workspaces/{gone.id}/", org)).code == "not_found"
    clone = await call(http, "POST", v2 + "dashboards/1/clone/", org, {"workspace": gone.id})
    assert clone.status == 404
    assert (await call(http, "DELETE", v2 + "workspaces/abc/", org)).status == 404
    assert list(fake.workspaces) == [keep.id]


# -- section 4 --------------------------------------------------------------------------------


async def test_company_functions(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    link = fake.link_base_url
    fake.add_company("acme1")
    fake.add_company("other1")
    mine = fake.issue_company_token("acme1").token
    theirs = fake.issue_company_token("other1").token

    added = fake.add_credential("acme1", 3, name="ga@acme.example", accounts=[("Site", "UA-1")])
    listed = (await call(http, "GET", link + "credentials/", mine)).body
    by_id = {i["id"]: i for i in listed}
    assert [c["id"] for c in by_id[3]["credentials"]] == [added.id]
    assert by_id[3]["credentials"][0]["accounts"] == [
        {"name": "Site", "id": added.accounts[0].id, "native_id": "UA-1"}
    ]
    assert by_id[2]["credentials"] == []

    urls = set()
    for integration_id in (1, 2, 3):
        reply = await call(http, "GET", link + f"credentials/connect/{integration_id}/", mine)
        assert reply.status == 200
        urls.add(reply.body["url"])
    assert len(urls) == 3
    for bad in ("99", "abc"):
        reply = await call(http, "GET", link + f"credentials/connect/{bad}/", mine)
        assert (reply.status, reply.code) == (404, "not_found")

    # Another company's credential does not exist from this company's point of view.
    assert (await call(http, "DELETE", link + f"credentials/{added.id}/", theirs)).status == 404
    assert (await call(http, "DELETE", link + f"credentials/{added.id}/", mine)).status == 204
    assert (await call(http, "DELETE", link + f"credentials/{added.id}/", mine)).status == 404
    assert added.id not in [c.id for c in fake.credentials("acme1")]


async def test_data_lake(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    fake.add_company("acme1")
    token = fake.issue_company_token("acme1").token
    url = fake.link_base_url + "data_lake/"

    def query(**overrides: str) -> dict[str, str]:
        return {"integration": "1", "date_from": "2024-02-27", "date_to": "2024-03-01"} | overrides

    reply = await call(http, "GET", url, token, params=query())
    assert [row["date"] for row in reply.body["schema"]] == [
        "2024-02-27",
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    ]
    assert len({row["url"] for row in reply.body["schema"]}) == 4
    async with http.get(reply.body["schema"][0]["url"]) as csv:  # the URL downloads a CSV
        assert csv.status == 200 and csv.content_type == "text/csv"
        assert (await csv.text()).startswith("date,")

    for params in (
        query(date_from="2024-1-01"),
        query(date_to="2024-02-30"),
        query(date_from="yesterday"),
        query(date_from="2024-03-02"),  # after date_to
        query(integration="one"),
        {"date_from": "2024-01-01", "date_to": "2024-01-01"},
        {"integration": "1", "date_to": "2024-01-01"},
    ):
        reply = await call(http, "GET", url, token, params=params)
        assert (reply.status, reply.code) == (400, "invalid_request"), params
    reply = await call(http, "GET", url, token, params=query(integration="99"))
    assert (reply.status, reply.code) == (404, "not_found")


async def test_list_companies_with_connections(
    fake: FakeConduit, http: aiohttp.ClientSession
) -> None:
    link, app = fake.link_base_url, fake.link_token
    fake.add_company("acme1", name="Acme")
    fake.add_company("other1")
    other_token = fake.issue_company_token("other1").token
    for credential in fake.credentials("other1"):  # other1 disconnects everything
        await call(http, "DELETE", link + f"credentials/{credential.id}/", other_token)

    plain = (await call(http, "GET", link + "company/", app)).body
    assert [c["id"] for c in plain] == ["acme1", "other1"]
    assert all("connections" not in c for c in plain)
    assert all(c["api_token"]["token"].startswith("ct_") for c in plain)

    full = (
        await call(http, "GET", link + "company/", app, params={"include_connections": "true"})
    ).body
    connections = {c["id"]: c["connections"] for c in full}
    assert [i["name"] for i in connections["acme1"]] == ["Google Ads"]
    assert len(connections["acme1"][0]["credentials"]) == 1
    assert connections["other1"] == []


# -- Date header and clock offset ----------------------------------------------------------------


async def test_date_header_on_every_response(
    fake: FakeConduit, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    fake.faults.script("GET /link/company/", [Fault.status(429)])
    replies = [
        await create_company(http, fake, "acme1"),  # 200
        await call(
            http,
            "DELETE",
            fake.base_url + f"workspaces/{fake.add_workspace('W').id}/",
            fake.org_token,
        ),
        await call(http, "GET", fake.base_url + "workspaces/"),  # 401
        await call(http, "GET", fake.base_url + "workspaces/", fake.link_token),  # 403
        await call(http, "GET", fake.link_base_url + "company/nobody/", fake.link_token),  # 404
        await call(http, "GET", fake.url + "v2/nowhere/"),  # no such route
        await call(http, "GET", fake.link_base_url + "company/", fake.link_token),  # fault 429
        await call(http, "GET", fake.url + "_fake/stats"),
    ]
    assert [r.status for r in replies] == [200, 204, 401, 403, 404, 404, 429, 200]
    for reply in replies:
        assert reply.date == START, reply


async def test_clock_offset(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with FakeConduit(clock=clock, clock_offset=-90) as fake:
        created = await create_company(http, fake, "acme1")
        assert created.date == START - 90
        assert created.body["created_at"] == "2027-01-15T07:58:30Z"
        assert created.body["api_token"]["expires_at"] == START - 90 + 600
        assert fake.now() == START - 90

        fake.clock_offset = 3600  # settable while running
        got = await call(http, "GET", fake.link_base_url + "company/acme1/", fake.link_token)
        assert got.date == START + 3600
        assert got.body["api_token"]["expires_at"] == START + 3600 + 600
        # Expiry is judged on the server's clock: the first token is long gone for it,
        # although the client's clock says it has 690 s left.
        first = created.body["api_token"]["token"]
        assert (
            await call(http, "GET", fake.link_base_url + "credentials/", first)
        ).code == "token_expired"


# -- routes outside the spec ----------------------------------------------------------------


async def test_unknown_routes_and_methods(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    no_slash = await call(http, "GET", fake.base_url + "workspaces", fake.org_token)
    assert (no_slash.status, no_slash.code) == (404, "not_found")
    wrong_method = await call(http, "PUT", fake.base_url + "workspaces/", fake.org_token)
    assert (wrong_method.status, wrong_method.code) == (405, "method_not_allowed")
    assert wrong_method.headers["Allow"] == "GET, POST"
    assert (await call(http, "GET", fake.url + "v3/anything/")).status == 404
    assert fake.stats.requests_total == 0


async def test_link_targets_are_served(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    page = (await create_company(http, fake, "acme1")).body["link_page"]["url"]
    share = (await call(http, "GET", fake.base_url + "dashboards/1/share/", fake.org_token)).body[
        "url"
    ]
    for url in (page, share):
        async with http.get(url) as reply:
            assert reply.status == 200 and reply.content_type == "text/html"


# -- stats ---------------------------------------------------------------------------------------


async def test_stats_route_and_reset(
    fake: FakeConduit, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    token = (await create_company(http, fake, "Acme1")).body["api_token"]["token"]
    await create_company(http, fake, "acme1")  # 409
    await call(
        http, "POST", fake.base_url + "workspaces/", fake.org_token, {"name": "W", "ext_id": "e1"}
    )
    clock.advance(600)
    await call(http, "GET", fake.link_base_url + "credentials/", token)
    fake.faults.script("GET /v2/dashboards/", [Fault.status(503)])
    await call(http, "GET", fake.base_url + "dashboards/", fake.org_token)

    reply = await call(http, "GET", fake.url + "_fake/stats")  # no token needed
    assert reply.status == 200
    assert reply.body == {
        "requests_total": 5,
        "requests": {
            "POST /link/company/": {"200": 1, "409": 1},
            "POST /v2/workspaces/": {"200": 1},
            "GET /link/credentials/": {"401": 1},
            "GET /v2/dashboards/": {"503": 1},
        },
        "tokens_issued": {"acme1": 1},
        "expired_token_requests": 1,
        "expired_token_log": [{"route": "GET /link/credentials/", "at": START + 600}],
        "tokens_revoked_on_reissue": {},
        "revoked_token_requests": 0,
        "companies_created": {"acme1": 1},
        "workspaces_created": 1,
        "workspaces_created_by_ext_id": {"e1": 1},
        "dashboards_cloned": 0,
        "faults_injected": {"status_503": 1},
    }
    assert reply.body == fake.stats.to_json()
    assert fake.stats.count("POST /link/company/") == 2
    assert fake.stats.count("POST /link/company/", 409) == 1

    reset = await call(http, "POST", fake.url + "_fake/stats/reset")
    assert reset.status == 204
    assert fake.stats.requests_total == 0 and fake.stats.requests == {}
    await create_company(http, fake, "next1")
    fake.stats.reset()
    assert fake.stats.to_json()["companies_created"] == {}
    assert "next1" in fake.companies  # stats reset does not touch the data


async def test_fast_mode_keeps_only_the_cheap_counters(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with FakeConduit(clock=clock, fast=True) as fake:
        token = (await create_company(http, fake, "acme1")).body["api_token"]["token"]
        await call(http, "POST", fake.base_url + "workspaces/", fake.org_token, {"name": "W"})
        clock.advance(601)
        await call(http, "GET", fake.link_base_url + "credentials/", token)
        stats = fake.stats
        assert stats.requests == {}
        assert stats.requests_total == 3
        assert stats.companies_created == {"acme1": 1} and stats.workspaces_created == 1
        assert stats.expired_token_requests == 1


async def test_helpers_reject_bad_seeds(fake: FakeConduit) -> None:
    fake.add_company("acme1")
    with pytest.raises(ValueError):
        fake.add_company("ACME1")
    with pytest.raises(ValueError):
        fake.add_company("not valid")
    with pytest.raises(KeyError):
        fake.issue_company_token("nobody")
    with pytest.raises(KeyError):
        fake.add_credential("acme1", 99)
    with pytest.raises(KeyError):
        fake.add_dashboard("D", workspace=999)
    assert fake.stats.companies_created == {}


# -- faults ----------------------------------------------------------------------------------------


async def test_scripted_faults_in_order(
    fake: FakeConduit, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    fake.faults.script(
        "POST /link/company/", [Fault.status(429, retry_after=2), Fault.lost(), None, Fault.reset()]
    )
    assert fake.faults.remaining("POST /link/company/") == 4

    limited = await create_company(http, fake, "a1")
    assert (limited.status, limited.code) == (429, "rate_limited")
    assert limited.headers["Retry-After"] == "2"
    assert "a1" not in fake.companies

    with pytest.raises(aiohttp.ClientConnectionError):
        await create_company(http, fake, "b1")
    assert "b1" in fake.companies  # the lost response's change was committed

    assert (await create_company(http, fake, "c1")).status == 200  # None: passes

    with pytest.raises(aiohttp.ClientConnectionError):
        await create_company(http, fake, "d1")
    assert "d1" not in fake.companies  # a reset comes before the handler

    assert fake.faults.remaining("POST /link/company/") == 0
    assert (await create_company(http, fake, "d1")).status == 200  # script over: passes
    retried = await create_company(http, fake, "b1")
    assert retried.code == "company_exists"  # what a blind retry after a lost response meets

    assert fake.stats.requests["POST /link/company/"] == {
        "429": 1,
        "lost": 1,
        "200": 2,
        "reset": 1,
        "409": 1,
    }
    assert fake.stats.faults_injected == {"status_429": 1, "lost": 1, "reset": 1}
    assert fake.stats.companies_created == {"b1": 1, "c1": 1, "d1": 1}


async def test_lost_workspace_create_then_blind_retry_duplicates(
    fake: FakeConduit, http: aiohttp.ClientSession
) -> None:
    fake.faults.script("POST /v2/workspaces/", [Fault.lost()])
    body = {"name": "W", "ext_id": "crm1"}
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(http, "POST", fake.base_url + "workspaces/", fake.org_token, body)
    assert (
        await call(http, "POST", fake.base_url + "workspaces/", fake.org_token, body)
    ).status == 200
    assert fake.stats.workspaces_created_by_ext_id == {"crm1": 2}
    assert len(fake.workspaces) == 2


async def test_retry_after_forms_and_error_bodies(
    fake: FakeConduit, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    fake.faults.script(
        "GET /v2/workspaces/",
        [
            Fault.status(429, retry_after=1.5),
            Fault.status(503, retry_after=30, retry_after_format="http-date"),
            Fault.status(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
            Fault.status(500),
            Fault.status(502, body="<html><body>Bad gateway</body></html>"),
            Fault.status(503, body=""),
        ],
    )
    url, org = fake.base_url + "workspaces/", fake.org_token
    seconds = await call(http, "GET", url, org)
    assert seconds.headers["Retry-After"] == "1.5"
    dated = await call(http, "GET", url, org)
    assert dated.status == 503 and dated.code == "server_error"
    retry_at = email.utils.parsedate_to_datetime(dated.headers["Retry-After"]).timestamp()
    assert retry_at == dated.date + 30
    verbatim = await call(http, "GET", url, org)
    assert verbatim.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    plain = await call(http, "GET", url, org)
    assert (plain.status, plain.code) == (
        500,
        "server_error",
    ) and "Retry-After" not in plain.headers
    html = await call(http, "GET", url, org)
    assert html.status == 502 and html.headers["Content-Type"].startswith("text/html")
    assert html.body == "<html><body>Bad gateway</body></html>"
    empty = await call(http, "GET", url, org)
    assert empty.status == 503 and empty.body is None
    assert (await call(http, "GET", url, org)).status == 200


async def test_fault_statuses_come_before_authorization_but_expiry_is_still_counted(
    fake: FakeConduit, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    token = (await create_company(http, fake, "acme1")).body["api_token"]["token"]
    clock.advance(600)
    fake.faults.script("GET /link/credentials/", [Fault.status(503)])
    assert (await call(http, "GET", fake.link_base_url + "credentials/", token)).status == 503
    assert fake.stats.expired_token_requests == 1


async def test_dropped_get_is_resent_once_by_aiohttp(
    fake: FakeConduit, http: aiohttp.ClientSession
) -> None:
    """Documents the client-side behaviour the module docstring warns about."""
    fake.faults.script("GET /v2/workspaces/", [Fault.reset(), Fault.lost()])
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(http, "GET", fake.base_url + "workspaces/", fake.org_token)
    assert fake.stats.requests["GET /v2/workspaces/"] == {"reset": 1, "lost": 1}


async def test_wildcard_and_precedence(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    fake.faults.script("*", [Fault.status(503), Fault.status(503)])
    fake.faults.script("GET /v2/workspaces/", [Fault.status(429)])
    org = fake.org_token
    assert (await call(http, "GET", fake.base_url + "workspaces/", org)).status == 429
    assert (await call(http, "GET", fake.base_url + "workspaces/", org)).status == 503
    assert (await call(http, "GET", fake.base_url + "dashboards/", org)).status == 503
    assert (await call(http, "GET", fake.base_url + "dashboards/", org)).status == 200

    fake.faults.random("*", rate=1.0, kinds=[Fault.status(502)])
    fake.faults.random("GET /v2/dashboards/", rate=1.0, kinds=[Fault.status(504)])
    assert (await call(http, "GET", fake.base_url + "dashboards/", org)).status == 504
    assert (await call(http, "GET", fake.base_url + "workspaces/", org)).status == 502
    fake.faults.script("GET /v2/workspaces/", [None])  # a script entry beats random rules
    assert (await call(http, "GET", fake.base_url + "workspaces/", org)).status == 200

    fake.faults.clear("GET /v2/dashboards/")
    assert (await call(http, "GET", fake.base_url + "dashboards/", org)).status == 502
    fake.faults.clear()
    assert (await call(http, "GET", fake.base_url + "dashboards/", org)).status == 200


async def _random_outcomes(seed: int, rule_seed: int | None) -> list[str]:
    kinds = [Fault.status(503), Fault.status(429), Fault.reset(), Fault.lost()]
    outcomes = []
    async with FakeConduit(seed=seed) as fake, aiohttp.ClientSession() as http:
        fake.faults.random("POST /link/company/", rate=0.4, kinds=kinds, seed=rule_seed)
        for n in range(60):
            try:
                outcomes.append(str((await create_company(http, fake, f"c{n}")).status))
            except aiohttp.ClientConnectionError:
                outcomes.append("dropped")
        assert sum(fake.stats.faults_injected.values()) == sum(o != "200" for o in outcomes)
    return outcomes


async def test_random_faults_are_deterministic_per_seed() -> None:
    first = await _random_outcomes(seed=0, rule_seed=7)
    assert first == await _random_outcomes(seed=123, rule_seed=7)  # rule seed wins
    assert first != await _random_outcomes(seed=0, rule_seed=8)
    assert {"200", "503", "429", "dropped"} <= set(first)
    # Without a rule seed the server's seed decides.
    assert await _random_outcomes(seed=5, rule_seed=None) == await _random_outcomes(
        seed=5, rule_seed=None
    )


async def test_random_rate_and_weights(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    url, org = fake.base_url + "workspaces/", fake.org_token
    fake.faults.random("GET /v2/workspaces/", rate=0.0, kinds=[Fault.status(503)])
    assert [(await call(http, "GET", url, org)).status for _ in range(20)] == [200] * 20
    fake.faults.random(
        "GET /v2/workspaces/",
        rate=1.0,
        kinds=[Fault.status(503), Fault.status(429)],
        weights=[0, 1],
    )
    assert [(await call(http, "GET", url, org)).status for _ in range(20)] == [429] * 20


async def test_latency_delays_then_handles(fake: FakeConduit, http: aiohttp.ClientSession) -> None:
    fake.faults.script("POST /link/company/", [Fault.latency(0.05)])
    started = time.monotonic()
    assert (await create_company(http, fake, "acme1")).status == 200
    assert time.monotonic() - started >= 0.05
    assert fake.stats.faults_injected == {"latency": 1}


async def test_stall_longer_than_client_timeout_still_commits(
    fake: FakeConduit, http: aiohttp.ClientSession
) -> None:
    fake.faults.script("POST /link/company/", [Fault.latency(0.2)])
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            fake.link_base_url + "company/",
            json={"id": "slow1"},
            headers={"Authorization": f"Bearer {fake.link_token}"},
            timeout=aiohttp.ClientTimeout(total=0.05),
        ):
            pass
    assert "slow1" not in fake.companies
    await eventually(lambda: "slow1" in fake.companies)  # the slow server finished anyway


async def test_close_releases_stalled_requests(clock: ManualClock) -> None:
    async with aiohttp.ClientSession() as http:
        fake = FakeConduit(clock=clock)
        await fake.start()
        fake.faults.script("POST /link/company/", [Fault.latency(60)])
        pending = asyncio.ensure_future(create_company(http, fake, "never1"))
        await eventually(lambda: fake.stats.faults_injected.get("latency") == 1)
        started = time.monotonic()
        await fake.close()
        assert time.monotonic() - started < 2
        with pytest.raises(aiohttp.ClientConnectionError):
            await pending
        assert "never1" not in fake.companies


async def test_fault_api_rejects_mistakes(fake: FakeConduit) -> None:
    with pytest.raises(ValueError, match="unknown route"):
        fake.faults.script("POST /link/company", [Fault.reset()])  # no trailing slash
    with pytest.raises(ValueError):
        fake.faults.random("*", rate=1.5, kinds=[Fault.reset()])
    with pytest.raises(ValueError):
        fake.faults.random("*", rate=0.5, kinds=[])
    with pytest.raises(ValueError):
        fake.faults.random("*", rate=0.5, kinds=[Fault.reset()], weights=[1, 2])
    with pytest.raises(TypeError):
        fake.faults.script("*", [503])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        Fault.status(200)
    with pytest.raises(ValueError):
        Fault.latency(-1)
    assert Fault.status(429).label == "status_429" and Fault.lost().kind is FaultKind.LOST
    assert not fake.faults.active


# -- the stand-alone server ---------------------------------------------------------------


async def test_module_runs_as_a_process_and_stops_on_sigterm() -> None:
    """The launcher checks the JSON line has exactly the announced keys."""
    launcher = FakeServerProcess(fast=True, org_token="org_fixed", link_token="link_fixed")
    async with launcher as info:
        assert (info.org_token, info.link_token) == ("org_fixed", "link_fixed")
        assert info.url.startswith("http://127.0.0.1:") and info.url.endswith("/")
        assert (info.base_url, info.link_base_url) == (info.url + "v2/", info.url + "link/")
        async with aiohttp.ClientSession() as http:
            reply = await call(
                http, "POST", info.link_base_url + "company/", "link_fixed", {"id": "a1"}
            )
            assert reply.status == 200
    assert launcher.returncode == 0  # a clean stop on SIGTERM


async def test_serve_announces_and_stops() -> None:
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(port=0, out=out, stop=stop, link_token="link_x"))
    await eventually(lambda: "Press Ctrl-C" in out.getvalue())
    text = out.getvalue()
    assert "Link APP token:     link_x" in text and "/v2/" in text and "/link/" in text
    stop.set()
    await task


def test_main_reports_a_taken_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["--port", str(taken.getsockname()[1])]) == 1
    assert "cannot serve" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--token-ttl", "0"])
