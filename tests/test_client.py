"""The client as a user meets it: every endpoint on the wire, the tokens each one carries,
validation before any request, configuration and lifecycle."""

from __future__ import annotations

import gc
import warnings
from datetime import date, datetime, timezone
from typing import Any

import aiohttp
import pytest
from core_support import (
    LINK,
    LINK_TOKEN,
    ORG_TOKEN,
    T0,
    V2,
    Recorder,
    VirtualTime,
    company_json,
    make_conduit,
    workspace_json,
)

from conduit_async import (
    ApiToken,
    ClientClosedError,
    ClonedDashboard,
    Company,
    Conduit,
    ConfigurationError,
    Dashboard,
    LinkPage,
    NotFoundError,
    RateLimitError,
    ValidationError,
    Workspace,
)
from conduit_async.routes import Route

UTC = timezone.utc
COMPANY_1 = "company-SECRET-1"


def only(http: Recorder) -> Any:
    """The one request sent."""
    assert len(http.sent) == 1, http.sent
    return http.sent[0]


# -- v2: workspaces and dashboards, organization token --------------------------------


async def test_list_workspaces(conduit: Conduit, http: Recorder) -> None:
    http.get(
        V2 + "workspaces/",
        payload=[
            {"id": 1, "ext_id": "crm1", "name": "Workspace 1", "token": "ws-SECRET-1"},
            {"id": 2, "ext_id": None, "name": "Workspace 2", "token": "ws-SECRET-2"},
        ],
    )
    workspaces = await conduit.workspaces.list()
    assert workspaces == [
        Workspace(id=1, name="Workspace 1", ext_id="crm1", token="ws-SECRET-1"),
        Workspace(id=2, name="Workspace 2", ext_id=None, token="ws-SECRET-2"),
    ]
    sent = only(http)
    assert (sent.method, sent.url) == ("GET", V2 + "workspaces/")
    assert sent.headers["Authorization"] == f"Bearer {ORG_TOKEN}"
    assert sent.body is None


async def test_create_workspace(conduit: Conduit, http: Recorder) -> None:
    # An ext_id is checked against a listing first: Conduit does not keep them unique.
    http.get(V2 + "workspaces/", payload=[workspace_json(1, "ws-SECRET-1", ext_id="other")])
    http.post(
        V2 + "workspaces/", status=201, payload=workspace_json(3, "ws-SECRET-3", ext_id="crm1")
    )
    workspace = await conduit.workspaces.create("Workspace 3", ext_id="crm1")
    assert workspace == Workspace(id=3, name="Workspace 3", ext_id="crm1", token="ws-SECRET-3")
    assert [s.method for s in http.sent] == ["GET", "POST"]
    sent = http.sent[-1]
    assert (sent.method, sent.url, sent.token) == ("POST", V2 + "workspaces/", ORG_TOKEN)
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json == {"name": "Workspace 3", "ext_id": "crm1"}


async def test_create_workspace_without_ext_id_sends_no_ext_id(
    conduit: Conduit, http: Recorder
) -> None:
    http.post(V2 + "workspaces/", payload=workspace_json(3, "ws-SECRET-3"))
    await conduit.workspaces.create("Ünïcode ✓")
    assert only(http).json == {"name": "Ünïcode ✓"}


async def test_disable_workspace(conduit: Conduit, http: Recorder) -> None:
    http.delete(V2 + "workspaces/5/", status=204, body="")
    assert await conduit.workspaces.disable(5) is None
    sent = only(http)
    assert (sent.method, sent.url, sent.token, sent.body) == (
        "DELETE",
        V2 + "workspaces/5/",
        ORG_TOKEN,
        None,
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("", "application/json"), ("{}", "application/json"), ("OK", "text/plain")],
)
async def test_disable_accepts_any_2xx_body(
    conduit: Conduit, http: Recorder, body: str, content_type: str
) -> None:
    # The spec documents no body for a disable: whatever comes back, it succeeded.
    http.delete(V2 + "workspaces/5/", status=200, body=body, content_type=content_type)
    assert await conduit.workspaces.disable(5) is None


async def test_disable_forgets_the_workspace_token(conduit: Conduit, http: Recorder) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(5, "ws-SECRET-5")])
    http.delete(V2 + "workspaces/5/", status=204, body="")
    http.get(V2 + "workspaces/", payload=[])
    await conduit.workspaces.list()
    await conduit.workspaces.disable(5)
    with pytest.raises(NotFoundError):
        await conduit.workspace(5).dashboards.list()
    assert [s.method for s in http.sent] == ["GET", "DELETE", "GET"]


async def test_organization_dashboards(conduit: Conduit, http: Recorder) -> None:
    http.get(V2 + "dashboards/", payload=[{"id": 1, "name": "Sales Dashboard"}])
    http.get(V2 + "dashboards/1/share/", payload={"url": "https://share.test/1"})
    assert await conduit.dashboards.list() == [Dashboard(id=1, name="Sales Dashboard")]
    assert await conduit.dashboards.share_url(1) == "https://share.test/1"
    assert [(s.method, s.url, s.token) for s in http.sent] == [
        ("GET", V2 + "dashboards/", ORG_TOKEN),
        ("GET", V2 + "dashboards/1/share/", ORG_TOKEN),
    ]


@pytest.mark.parametrize(
    ("name", "body"),
    [("Copy", {"workspace": 7, "name": "Copy"}), (None, {"workspace": 7})],
)
async def test_clone_dashboard(
    conduit: Conduit, http: Recorder, name: str | None, body: dict[str, Any]
) -> None:
    http.post(
        V2 + "dashboards/1/clone/",
        payload={"id": 2, "name": name or "Sales Dashboard", "url": "https://dash.test/2"},
    )
    cloned = await conduit.dashboards.clone(1, workspace=7, name=name)
    assert cloned == ClonedDashboard(
        id=2, name=name or "Sales Dashboard", url="https://dash.test/2"
    )
    sent = only(http)
    assert (sent.method, sent.url, sent.token) == ("POST", V2 + "dashboards/1/clone/", ORG_TOKEN)
    assert sent.json == body


# -- v2: one workspace, its own token -------------------------------------------------


async def test_workspace_view_uses_the_workspace_token_from_the_list(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(
        V2 + "workspaces/",
        payload=[workspace_json(1, "ws-SECRET-1"), workspace_json(2, "ws-SECRET-2")],
    )
    http.get(V2 + "dashboards/", payload=[{"id": 9, "name": "Theirs"}])
    http.get(V2 + "dashboards/9/share/", payload={"url": "https://share.test/9"})
    workspace = conduit.workspace(2)
    assert await workspace.dashboards.list() == [Dashboard(id=9, name="Theirs")]
    assert await workspace.dashboards.share_url(9) == "https://share.test/9"
    assert [(s.method, s.url, s.token) for s in http.sent] == [
        ("GET", V2 + "workspaces/", ORG_TOKEN),
        ("GET", V2 + "dashboards/", "ws-SECRET-2"),
        ("GET", V2 + "dashboards/9/share/", "ws-SECRET-2"),  # no second listing
    ]
    assert not hasattr(workspace.dashboards, "clone")


async def test_workspace_view_by_ext_id(conduit: Conduit, http: Recorder) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(1, "ws-SECRET-1", ext_id="crm1")])
    http.get(V2 + "dashboards/", payload=[])
    await conduit.workspace(ext_id="crm1").dashboards.list()
    assert http.sent[-1].token == "ws-SECRET-1"
    assert await conduit.workspace(ext_id="crm1").get() == Workspace(
        id=1, name="Workspace 1", ext_id="crm1", token="ws-SECRET-1"
    )
    assert len(http.sent) == 2


async def test_listed_or_created_workspaces_need_no_lookup(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(1, "ws-SECRET-1")])
    http.post(V2 + "workspaces/", payload=workspace_json(2, "ws-SECRET-2"))
    http.get(V2 + "dashboards/", payload=[], repeat=True)
    await conduit.workspaces.list()
    await conduit.workspaces.create("Two")
    await conduit.workspace(1).dashboards.list()
    await conduit.workspace(2).dashboards.list()
    assert [s.token for s in http.sent] == [ORG_TOKEN, ORG_TOKEN, "ws-SECRET-1", "ws-SECRET-2"]


async def test_unknown_workspace_is_not_found_without_a_dashboard_call(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(1, "ws-SECRET-1")])
    with pytest.raises(NotFoundError) as info:
        await conduit.workspace(99).dashboards.list()
    assert "99" in str(info.value)
    assert [s.url for s in http.sent] == [V2 + "workspaces/"]


# -- Link: companies, Link APP token ----------------------------------------------------


async def test_create_company(conduit: Conduit, http: Recorder) -> None:
    http.post(LINK + "company/", status=201, payload=company_json(expires_at=1678898400))
    company = await conduit.companies.create("acme1", name="Acme", page_enabled=False)
    assert company == Company(
        id="acme1",
        name="Acme",
        created_at=datetime(2023, 3, 15, 12, 34, 56, tzinfo=UTC),
        link_page=LinkPage(url=None, enabled=False),
        api_token=ApiToken(token=COMPANY_1, expires_at=datetime(2023, 3, 15, 16, 40, tzinfo=UTC)),
    )
    sent = only(http)
    assert (sent.method, sent.url, sent.token) == ("POST", LINK + "company/", LINK_TOKEN)
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json == {"id": "acme1", "name": "Acme", "page_enabled": False}


async def test_create_company_sends_only_what_was_given(conduit: Conduit, http: Recorder) -> None:
    http.post(LINK + "company/", payload=company_json(name=None))
    await conduit.companies.create("acme1")
    assert only(http).json == {"id": "acme1"}


async def test_get_company(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/ACME1/", payload=company_json("ACME1", page_enabled=True))
    company = await conduit.companies.get("ACME1")
    assert company.id == "ACME1"
    assert company.link_page == LinkPage(url="https://link.test/ACME1", enabled=True)
    sent = only(http)
    assert (sent.method, sent.url, sent.token, sent.body) == (
        "GET",
        LINK + "company/ACME1/",
        LINK_TOKEN,
        None,
    )


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        ({"name": "New", "page_enabled": True}, {"name": "New", "page_enabled": True}),
        ({"page_enabled": False}, {"page_enabled": False}),
        ({}, {}),
    ],
)
async def test_update_company(
    conduit: Conduit, http: Recorder, kwargs: dict[str, Any], body: dict[str, Any]
) -> None:
    http.post(LINK + "company/acme1/", payload=company_json(name="New", token="company-SECRET-3"))
    company = await conduit.companies.update("acme1", **kwargs)
    assert company.name == "New"
    assert company.api_token.token == "company-SECRET-3"
    sent = only(http)
    assert (sent.method, sent.url, sent.token) == ("POST", LINK + "company/acme1/", LINK_TOKEN)
    assert sent.json == body


async def test_list_companies(conduit: Conduit, http: Recorder) -> None:
    http.get(
        LINK + "company/",
        payload=[company_json("a1", token="tok-a"), company_json("b2", token="tok-b")],
    )
    companies = await conduit.companies.list()
    assert [(c.id, c.api_token.token) for c in companies] == [("a1", "tok-a"), ("b2", "tok-b")]
    sent = only(http)
    assert (sent.method, sent.url, sent.token) == ("GET", LINK + "company/", LINK_TOKEN)
    # Each listed company's token is cached.
    assert await conduit.company("B2").token() == "tok-b"
    assert len(http.sent) == 1


# -- Link: one company, its own token -------------------------------------------------


async def test_company_view_fetches_the_company_token_once(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(LINK + "company/acme1/", payload=company_json())
    http.get(
        LINK + "credentials/",
        payload=[{"id": 7, "name": "Google Ads", "credentials": []}],
        repeat=True,
    )
    view = conduit.company("acme1")
    assert [i.id for i in await view.integrations()] == ["7"]
    await view.integrations()
    assert [(s.method, s.url, s.token) for s in http.sent] == [
        ("GET", LINK + "company/acme1/", LINK_TOKEN),
        ("GET", LINK + "credentials/", COMPANY_1),
        ("GET", LINK + "credentials/", COMPANY_1),
    ]


async def test_the_request_verb_fills_every_placeholder_of_a_route(
    conduit: Conduit, http: Recorder
) -> None:
    route = Route("GET", "link", "a%2Fb/{cid}/x{n}/{cid}", "link_app", lambda data, _: data)
    http.get(LINK + "a%2Fb/acme1/x7/acme1", payload={"ok": True})
    reply = await conduit.request(route, cid="acme1", n=7)
    assert reply.value == {"ok": True}
    assert only(http).url == LINK + "a%2Fb/acme1/x7/acme1"  # a literal % left as it is


async def test_company_views_are_kept_per_client_and_bounded(vt: VirtualTime) -> None:
    async with make_conduit(vt, token_cache_size=3) as conduit:
        view = conduit.company("acme1")
        assert conduit.company("acme1") is view  # a web app's view per call is a lookup
        assert conduit.company("ACME1") is not view  # the id as given, case and all
        # A client with other options keeps its own views, so its calls use its options.
        hurried = conduit.with_options(max_wait=0.5)
        assert hurried.company("acme1") is not view
        assert hurried.company("acme1") is hurried.company("acme1")
        for cid in ("other1", "other2"):
            conduit.company(cid)  # the cache, full at three views, is emptied
        assert conduit.company("acme1") is not view
        assert conduit.company("acme1") == view  # a fresh view of the same company


async def test_a_kept_company_view_keeps_its_clients_options(
    vt: VirtualTime, http: Recorder
) -> None:
    http.get(LINK + "company/acme1/", payload=company_json())
    http.get(LINK + "credentials/", status=429, headers={"Retry-After": "30"})
    async with make_conduit(vt) as conduit:
        await conduit.company("acme1").token()  # the plain client's view, kept
        with pytest.raises(RateLimitError):
            await conduit.with_options(max_wait=0.5).company("acme1").integrations()
    assert vt.sleeps == []  # the hurried view did not wait out the pause


@pytest.mark.parametrize("bad", [["acme1"], {"id": "acme1"}, None, 7, "", "acme 1"])
def test_a_company_id_that_is_not_one_is_refused_whether_hashable_or_not(
    conduit: Conduit, bad: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        conduit.company(bad)
    assert caught.value.argument == "company_id"
    with pytest.raises(ValidationError):
        conduit.company(bad)  # and again: nothing refused is kept


@pytest.mark.parametrize("how", ["create", "get", "update"])
async def test_company_token_from_a_company_response_is_reused(
    conduit: Conduit, http: Recorder, how: str
) -> None:
    http.post(LINK + "company/", payload=company_json())
    http.get(LINK + "company/acme1/", payload=company_json())
    http.post(LINK + "company/acme1/", payload=company_json())
    http.get(LINK + "credentials/connect/7/", payload={"url": "https://connect.test/7"})
    if how == "create":
        await conduit.companies.create("acme1")
    elif how == "get":
        await conduit.companies.get("acme1")
    else:
        await conduit.companies.update("acme1", name="Acme")
    assert await conduit.company("ACME1").connect_url(7) == "https://connect.test/7"
    assert len(http.sent) == 2
    last = http.sent[-1]
    assert (last.method, last.url, last.token) == (
        "GET",
        LINK + "credentials/connect/7/",
        COMPANY_1,
    )


async def test_delete_credential(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=company_json())
    http.delete(LINK + "credentials/c-9/", status=204, body="")
    assert await conduit.company("acme1").delete_credential("c-9") is None
    last = http.sent[-1]
    assert (last.method, last.url, last.token, last.body) == (
        "DELETE",
        LINK + "credentials/c-9/",
        COMPANY_1,
        None,
    )


async def test_data_lake(conduit: Conduit, http: Recorder) -> None:
    url = LINK + "data_lake/?integration=7&account=55&date_from=2024-01-01&date_to=2024-01-31"
    http.get(LINK + "company/acme1/", payload=company_json())
    http.get(url, payload={"schema": [{"date": "2024-01-01", "url": "https://f.test/1.csv"}]})
    files = await conduit.company("acme1").data_lake(
        integration=7, account=55, date_from=date(2024, 1, 1), date_to="2024-01-31"
    )
    assert [(f.date, f.url) for f in files] == [(date(2024, 1, 1), "https://f.test/1.csv")]
    last = http.sent[-1]
    assert last.method == "GET"
    assert last.url == (
        LINK + "data_lake/?account=55&date_from=2024-01-01&date_to=2024-01-31&integration=7"
    )
    assert last.token == COMPANY_1


async def test_company_token_is_refreshed_before_it_expires(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    http.get(LINK + "company/acme1/", payload=company_json(expires_at=T0 + 600))
    http.get(
        LINK + "company/acme1/",
        payload=company_json(token="company-SECRET-2", expires_at=T0 + 1200),
    )
    http.get(LINK + "credentials/", payload=[], repeat=True)
    view = conduit.company("acme1")
    await view.integrations()
    vt.now = T0 + 570  # past the hard deadline (90% of 600 s): the old token is not sent
    await view.integrations()
    assert [s.token for s in http.sent] == [LINK_TOKEN, COMPANY_1, LINK_TOKEN, "company-SECRET-2"]


async def test_server_clock_skew_is_measured_from_the_date_header(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    # The server's clock is an hour behind: its expires_at is in our past, yet the
    # token has ten minutes to live.
    http.get(
        LINK + "company/acme1/",
        payload=company_json(expires_at=T0 - 3600 + 600),
        headers={"Date": vt.http_date(-3600)},
    )
    http.get(LINK + "credentials/", payload=[], repeat=True)
    view = conduit.company("acme1")
    await view.integrations()
    vt.now += 60
    await view.integrations()
    assert [s.token for s in http.sent] == [LINK_TOKEN, COMPANY_1, COMPANY_1]


# -- validation before any request ----------------------------------------------------


BAD_COMPANY_IDS = [
    "",
    "a" * 1025,
    "acmé1",
    "ＡＣＭＥ1",  # fullwidth letters
    "acme١",  # Arabic-Indic digit
    "acme 1",
    " acme1",
    "acme1\n",
    "acme\t1",
    "../acme1",
    "acme1/..",
    "a/b",
    "a?b",
    "a#b",
    "a%2Fb",
    "a&b=c",
    "a.b",
    "a-b",
    "a_b",
    "a+b",
    12,
    None,
    b"acme1",
    ["acme1"],
]


@pytest.mark.parametrize("bad", BAD_COMPANY_IDS, ids=repr)
@pytest.mark.parametrize(
    "call",
    [
        lambda c, cid: c.companies.create(cid),
        lambda c, cid: c.companies.get(cid),
        lambda c, cid: c.companies.update(cid, name="x"),
        lambda c, cid: c.companies.token(cid),
    ],
    ids=["create", "get", "update", "token"],
)
async def test_bad_company_id_is_refused_before_any_request(
    conduit: Conduit, http: Recorder, bad: Any, call: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        await call(conduit, bad)
    assert info.value.argument == "company_id"
    assert isinstance(info.value, ValueError)
    assert http.sent == []
    assert conduit.requests_sent == 0


@pytest.mark.parametrize("bad", BAD_COMPANY_IDS, ids=repr)
def test_bad_company_id_is_refused_by_the_view(vt: VirtualTime, bad: Any) -> None:
    conduit = make_conduit(vt)  # never used: no session is created, nothing to close
    with pytest.raises(ValidationError) as info:
        conduit.company(bad)
    assert info.value.argument == "company_id"


@pytest.mark.parametrize("good", ["a", "7", "A" * 1024, "Acme1", "0" * 1024])
async def test_company_id_edges_are_accepted(conduit: Conduit, http: Recorder, good: str) -> None:
    http.get(LINK + f"company/{good}/", payload=company_json(good))
    assert (await conduit.companies.get(good)).id == good


async def test_names_of_1024_characters_are_accepted(conduit: Conduit, http: Recorder) -> None:
    http.post(LINK + "company/", payload=company_json(name="n" * 1024))
    http.post(V2 + "workspaces/", payload=workspace_json(1, "ws-SECRET-1", name="n" * 1024))
    await conduit.companies.create("acme1", name="n" * 1024)
    await conduit.workspaces.create("n" * 1024)
    assert len(http.sent) == 2


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda c: c.companies.create("acme1", name="n" * 1025), "name"),
        (lambda c: c.companies.create("acme1", name=5), "name"),
        (lambda c: c.companies.create("acme1", page_enabled="yes"), "page_enabled"),
        (lambda c: c.companies.create("acme1", page_enabled=1), "page_enabled"),
        (lambda c: c.companies.update("acme1", name="n" * 1025), "name"),
        (lambda c: c.companies.update("acme1", page_enabled="no"), "page_enabled"),
        (lambda c: c.workspaces.create("n" * 1025), "name"),
        (lambda c: c.workspaces.create(""), "name"),
        (lambda c: c.workspaces.create("   "), "name"),
        (lambda c: c.workspaces.create(None), "name"),
        (lambda c: c.workspaces.create(42), "name"),
        (lambda c: c.workspaces.create("W", ext_id=7), "ext_id"),
        (lambda c: c.workspaces.create("W", ext_id="e" * 1025), "ext_id"),
        (lambda c: c.workspaces.disable(0), "workspace_id"),
        (lambda c: c.workspaces.disable(-1), "workspace_id"),
        (lambda c: c.workspaces.disable("5"), "workspace_id"),
        (lambda c: c.workspaces.disable(True), "workspace_id"),
        (lambda c: c.workspaces.disable(1.0), "workspace_id"),
        (lambda c: c.dashboards.share_url(0), "dashboard_id"),
        (lambda c: c.dashboards.share_url("1/../2"), "dashboard_id"),
        (lambda c: c.dashboards.clone("1", workspace=2), "dashboard_id"),
        (lambda c: c.dashboards.clone(1, workspace=False), "workspace"),
        (lambda c: c.dashboards.clone(1, workspace=2, name="n" * 1025), "name"),
        (lambda c: c.company("acme1").connect_url("../7"), "integration_id"),
        (lambda c: c.company("acme1").connect_url("7/x"), "integration_id"),
        (lambda c: c.company("acme1").connect_url("."), "integration_id"),
        (lambda c: c.company("acme1").connect_url(""), "integration_id"),
        (lambda c: c.company("acme1").connect_url("7 "), "integration_id"),
        (lambda c: c.company("acme1").connect_url("7?x=1"), "integration_id"),
        (lambda c: c.company("acme1").connect_url(None), "integration_id"),
        (lambda c: c.company("acme1").connect_url(True), "integration_id"),
        (lambda c: c.company("acme1").delete_credential(".."), "credential_id"),
        (lambda c: c.company("acme1").delete_credential("."), "credential_id"),
        (lambda c: c.company("acme1").delete_credential("c%2F9"), "credential_id"),
        (
            lambda c: c.company("acme1").data_lake(
                integration=7, date_from="yesterday", date_to="2024-01-01"
            ),
            "date_from",
        ),
        (
            lambda c: c.company("acme1").data_lake(
                integration=7, date_from="2024-01-01", date_to=20240101
            ),
            "date_to",
        ),
        (
            lambda c: c.company("acme1").data_lake(
                integration="../7", date_from="2024-01-01", date_to="2024-01-02"
            ),
            "integration",
        ),
        (
            lambda c: c.company("acme1").data_lake(
                integration=7, account="a/b", date_from="2024-01-01", date_to="2024-01-02"
            ),
            "account",
        ),
    ],
)
async def test_bad_arguments_are_refused_before_any_request(
    conduit: Conduit, http: Recorder, call: Any, argument: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await call(conduit)
    assert info.value.argument == argument
    assert argument in str(info.value)
    assert http.sent == []


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({}, "workspace"),
        ({"workspace_id": 1, "ext_id": "crm1"}, "workspace"),
        ({"workspace_id": 0}, "workspace_id"),
        ({"workspace_id": "1"}, "workspace_id"),
        ({"ext_id": 5}, "ext_id"),
    ],
)
def test_workspace_view_needs_one_valid_name(
    vt: VirtualTime, kwargs: dict[str, Any], argument: str
) -> None:
    conduit = make_conduit(vt)
    with pytest.raises(ValidationError) as info:
        conduit.workspace(**kwargs)
    assert info.value.argument == argument


# -- configuration --------------------------------------------------------------------


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "CONDUIT_TOKEN",
        "CONDUIT_LINK_TOKEN",
        "CONDUIT_BASE_URL",
        "CONDUIT_LINK_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_configuration_from_the_environment(
    no_env: pytest.MonkeyPatch, vt: VirtualTime, http: Recorder
) -> None:
    no_env.setenv("CONDUIT_TOKEN", "env-org-SECRET")
    no_env.setenv("CONDUIT_LINK_TOKEN", "env-link-SECRET")
    no_env.setenv("CONDUIT_BASE_URL", "https://env.test/v2")
    no_env.setenv("CONDUIT_LINK_BASE_URL", "https://env.test/link/")
    http.get("https://env.test/v2/workspaces/", payload=[])
    http.get("https://env.test/link/company/", payload=[])
    async with Conduit() as conduit:
        assert conduit.base_url == "https://env.test/v2/"
        assert conduit.link_base_url == "https://env.test/link/"
        await conduit.workspaces.list()
        await conduit.companies.list()
    assert [(s.url, s.token) for s in http.sent] == [
        ("https://env.test/v2/workspaces/", "env-org-SECRET"),
        ("https://env.test/link/company/", "env-link-SECRET"),
    ]


async def test_arguments_win_over_the_environment(
    no_env: pytest.MonkeyPatch, vt: VirtualTime, http: Recorder
) -> None:
    no_env.setenv("CONDUIT_TOKEN", "env-org-SECRET")
    no_env.setenv("CONDUIT_BASE_URL", "https://env.test/v2/")
    http.get(V2 + "workspaces/", payload=[])
    async with make_conduit(vt) as conduit:
        await conduit.workspaces.list()
    assert (only(http).url, only(http).token) == (V2 + "workspaces/", ORG_TOKEN)


def test_default_base_urls(no_env: pytest.MonkeyPatch) -> None:
    conduit = Conduit()
    assert conduit.base_url == "https://api.getconduit.app/v2/"
    assert conduit.link_base_url == "https://api.getconduit.app/link/"


@pytest.mark.parametrize("empty", [None, ""])
@pytest.mark.parametrize(
    ("call", "variable"),
    [
        (lambda c: c.workspaces.list(), "CONDUIT_TOKEN"),
        (lambda c: c.workspaces.create("W"), "CONDUIT_TOKEN"),
        (lambda c: c.dashboards.clone(1, workspace=2), "CONDUIT_TOKEN"),
        (lambda c: c.workspace(1).dashboards.list(), "CONDUIT_TOKEN"),
        (lambda c: c.companies.create("acme1"), "CONDUIT_LINK_TOKEN"),
        (lambda c: c.companies.list(), "CONDUIT_LINK_TOKEN"),
        (lambda c: c.company("acme1").integrations(), "CONDUIT_LINK_TOKEN"),
    ],
)
async def test_a_call_needing_a_missing_token_names_the_variable(
    no_env: pytest.MonkeyPatch,
    vt: VirtualTime,
    http: Recorder,
    call: Any,
    variable: str,
    empty: str | None,
) -> None:
    if empty is not None:
        no_env.setenv("CONDUIT_TOKEN", empty)
        no_env.setenv("CONDUIT_LINK_TOKEN", empty)
    async with Conduit(base_url=V2, link_base_url=LINK, clock=vt) as conduit:
        with pytest.raises(ConfigurationError) as info:
            await call(conduit)
    assert variable in str(info.value)
    assert http.sent == []


async def test_one_token_is_enough_for_its_own_calls(
    no_env: pytest.MonkeyPatch, vt: VirtualTime, http: Recorder
) -> None:
    http.get(LINK + "company/", payload=[])
    async with Conduit(link_token=LINK_TOKEN, base_url=V2, link_base_url=LINK) as conduit:
        assert await conduit.companies.list() == []
        with pytest.raises(ConfigurationError, match="CONDUIT_TOKEN"):
            await conduit.workspaces.list()


@pytest.mark.parametrize(
    "url",
    [
        "http://api.test/v2/",
        "http://10.0.0.1/v2/",
        "http://localhost.evil.test/v2/",
        "http://127.0.0.1.evil.test/v2/",
        "http://evil.test/127.0.0.1/",
    ],
)
@pytest.mark.parametrize("which", ["base_url", "link_base_url", "CONDUIT_BASE_URL"])
def test_non_https_base_url_is_refused(no_env: pytest.MonkeyPatch, url: str, which: str) -> None:
    kwargs = {}
    if which.startswith("CONDUIT_"):
        no_env.setenv(which, url)
    else:
        kwargs[which] = url
    with pytest.raises(ConfigurationError) as info:
        Conduit(token=ORG_TOKEN, **kwargs)
    assert "allow_insecure" in str(info.value)
    assert ORG_TOKEN not in str(info.value)
    assert Conduit(token=ORG_TOKEN, allow_insecure=True, **kwargs)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/v2/",
        "http://localhost:8080/v2/",
        "http://127.0.0.1:8080/v2/",
        "http://127.5.6.7/v2/",
        "http://[::1]:8080/v2/",
    ],
)
def test_loopback_http_is_allowed(no_env: pytest.MonkeyPatch, url: str) -> None:
    assert Conduit(base_url=url).base_url == url


@pytest.mark.parametrize("url", ["ftp://api.test/", "api.test/v2/", "https://", "//api.test/"])
def test_base_url_must_be_http(no_env: pytest.MonkeyPatch, url: str) -> None:
    with pytest.raises(ConfigurationError):
        Conduit(base_url=url, allow_insecure=True)


@pytest.mark.parametrize(("kwargs"), [{"timeout": 0}, {"timeout": -1}, {"max_connections": 0}])
def test_nonsense_settings_are_refused(no_env: pytest.MonkeyPatch, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Conduit(**kwargs)


async def test_insecure_base_url_is_used_when_allowed(vt: VirtualTime, http: Recorder) -> None:
    http.get("http://api.test/v2/workspaces/", payload=[])
    async with make_conduit(vt, base_url="http://api.test/v2", allow_insecure=True) as conduit:
        await conduit.workspaces.list()
    assert only(http).url == "http://api.test/v2/workspaces/"


# -- lifecycle --------------------------------------------------------------------------


async def test_async_with_closes_the_client(vt: VirtualTime, http: Recorder) -> None:
    http.get(V2 + "workspaces/", payload=[])
    async with make_conduit(vt) as conduit:
        await conduit.workspaces.list()
        session = only(http).session
        assert not conduit.closed
    assert conduit.closed
    assert session.closed
    await conduit.close()  # twice is fine


async def test_close_closes_the_client(vt: VirtualTime, http: Recorder) -> None:
    http.get(V2 + "workspaces/", payload=[])
    conduit = make_conduit(vt)
    await conduit.workspaces.list()
    await conduit.close()
    assert conduit.closed
    assert only(http).session.closed


async def test_closing_an_unused_client_is_fine(vt: VirtualTime) -> None:
    conduit = make_conduit(vt)
    await conduit.close()
    assert conduit.closed


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.workspaces.list(),
        lambda c: c.workspaces.create("W", ext_id="e"),
        lambda c: c.dashboards.share_url(1),
        lambda c: c.companies.create("acme1"),
        lambda c: c.companies.get("acme1"),
        lambda c: c.companies.token("acme1"),
        lambda c: c.company("acme1").integrations(),
        lambda c: c.company("acme1").token(),
        lambda c: c.workspace(1).dashboards.list(),
        lambda c: c.workspace(1).get(),
    ],
)
async def test_a_closed_client_raises_client_closed(
    vt: VirtualTime, http: Recorder, call: Any
) -> None:
    http.get(V2 + "workspaces/", payload=[])
    async with make_conduit(vt) as conduit:
        await conduit.workspaces.list()
    http.sent.clear()
    with pytest.raises(ClientClosedError, match="closed"):
        await call(conduit)
    assert http.sent == []


async def test_a_caller_owned_session_is_used_and_never_closed(
    vt: VirtualTime, http: Recorder
) -> None:
    http.get(V2 + "workspaces/", payload=[])
    async with aiohttp.ClientSession() as mine:
        async with make_conduit(vt, session=mine) as conduit:
            await conduit.workspaces.list()
        assert only(http).session is mine
        assert conduit.closed
        assert not mine.closed
        await make_conduit(vt, session=mine).close()
        assert not mine.closed


async def test_a_closed_caller_session_raises_client_closed(
    vt: VirtualTime, http: Recorder
) -> None:
    mine = aiohttp.ClientSession()
    await mine.close()
    conduit = make_conduit(vt, session=mine)
    with pytest.raises(ClientClosedError):
        await conduit.workspaces.list()
    await conduit.close()
    assert http.sent == []


async def test_no_unclosed_session_warning(vt: VirtualTime) -> None:
    # Its own mock, dropped before collecting: the mock's call records hold the session.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Recorder() as http:
            http.get(V2 + "workspaces/", payload=[])
            http.get(LINK + "company/acme1/", payload=company_json())
            http.get(LINK + "credentials/", payload=[])
            async with make_conduit(vt) as conduit:
                await conduit.workspaces.list()
                await conduit.company("acme1").integrations()
            assert http.sent[0].session.closed
        del conduit, http
        gc.collect()
    assert [str(w.message) for w in caught] == []


async def test_requests_sent_counts_every_attempt(vt: VirtualTime, http: Recorder) -> None:
    http.get(V2 + "workspaces/", status=503, body="")
    http.get(V2 + "workspaces/", payload=[])
    async with make_conduit(vt) as conduit:
        assert conduit.requests_sent == 0
        await conduit.workspaces.list()
        assert conduit.requests_sent == 2
