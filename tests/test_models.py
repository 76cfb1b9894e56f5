"""Responses parsed into the attrs models, malformed 2xx responses, and secrets kept out of repr."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta, timezone
from typing import Any

import attrs
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

import conduit_async
from conduit_async import (
    Account,
    ApiToken,
    ClonedDashboard,
    Company,
    Conduit,
    Credential,
    Dashboard,
    DataLakeFile,
    Integration,
    LinkPage,
    ResponseFormatError,
    TokenLease,
    Workspace,
)
from conduit_async.models import converter

UTC = timezone.utc
COMPANY_TOKEN = "company-SECRET-1"
GET_COMPANY = "GET /link/company/{cid}/"


def _set(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `payload` with the dotted `path` set to `value` (removed if `...`)."""
    data = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


# -- public surface -------------------------------------------------------------------


PUBLIC = [
    "Conduit", "RetryPolicy", "Workspace", "Dashboard", "ClonedDashboard", "Company",
    "LinkPage", "ApiToken", "Integration", "Credential", "Account", "DataLakeFile",
    "CompanyView", "WorkspaceView", "TokenBroker", "TokenLease", "TokenStore",
    "InMemoryTokenStore", "ConduitError", "ConfigurationError", "ValidationError",
    "ClientClosedError", "ResponseFormatError", "TransportError", "ConduitTimeoutError",
    "OutcomeUnknownError", "APIStatusError", "BadRequestError", "AuthenticationError",
    "PermissionDeniedError", "NotFoundError", "ConflictError", "RateLimitError", "ServerError",
]  # fmt: skip


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_imports_from_the_package(name: str) -> None:
    assert name in conduit_async.__all__
    obj = getattr(conduit_async, name)
    assert obj.__module__.startswith("conduit_async")


def test_everything_in_all_resolves() -> None:
    missing = [n for n in conduit_async.__all__ if not hasattr(conduit_async, n)]
    assert missing == []
    assert conduit_async.__version__


# -- parsing into models ----------------------------------------------------------------


async def test_company_parses_into_models_with_utc_datetimes(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(
        LINK + "company/acme1/",
        payload=company_json(expires_at=1678898400, page_enabled=True),
    )
    company = await conduit.companies.get("acme1")
    assert company == Company(
        id="acme1",
        name="Acme",
        created_at=datetime(2023, 3, 15, 12, 34, 56, tzinfo=UTC),
        link_page=LinkPage(url="https://link.test/acme1", enabled=True),
        api_token=ApiToken(
            token=COMPANY_TOKEN, expires_at=datetime(2023, 3, 15, 16, 40, tzinfo=UTC)
        ),
    )
    assert company.created_at.utcoffset() == timedelta(0)
    assert company.api_token.expires_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "created_at",
    [
        "2023-03-15T12:34:56Z",
        "2023-03-15T12:34:56+00:00",
        "2023-03-15T14:34:56+02:00",
        "2023-03-15T07:34:56-05:00",
        "2023-03-15T12:34:56",  # naive: the API speaks UTC
        "2023-03-15T12:34:56.000Z",
    ],
)
async def test_created_at_is_normalised_to_aware_utc(
    conduit: Conduit, http: Recorder, created_at: str
) -> None:
    http.get(LINK + "company/acme1/", payload=company_json(created_at=created_at))
    company = await conduit.companies.get("acme1")
    assert company.created_at == datetime(2023, 3, 15, 12, 34, 56, tzinfo=UTC)
    assert company.created_at.tzinfo is not None
    assert company.created_at.utcoffset() == timedelta(0)


async def test_fractional_expires_at_keeps_its_fraction(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=company_json(expires_at=T0 + 600.25))
    company = await conduit.companies.get("acme1")
    assert company.api_token.expires_at == datetime.fromtimestamp(T0 + 600.25, tz=UTC)
    assert company.api_token.expires_at.microsecond == 250_000


async def test_disabled_company_page_has_no_url(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=company_json(page_enabled=False))
    company = await conduit.companies.get("acme1")
    assert company.link_page == LinkPage(url=None, enabled=False)


async def test_company_name_may_be_null(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=company_json(name=None))
    assert (await conduit.companies.get("acme1")).name is None


async def test_unknown_fields_are_ignored_at_every_level(conduit: Conduit, http: Recorder) -> None:
    payload = company_json(connections=[{"id": 1}], plan="gold")
    payload["link_page"]["theme"] = "dark"
    payload["api_token"]["scope"] = "company"
    http.get(LINK + "company/acme1/", payload=payload)
    http.get(
        V2 + "workspaces/",
        payload=[{**workspace_json(1, "ws-SECRET-1"), "created": "2024-01-01", "seats": 3}],
    )
    company = await conduit.companies.get("acme1")
    assert company.id == "acme1"
    assert company.api_token.token == COMPANY_TOKEN
    assert await conduit.workspaces.list() == [
        Workspace(id=1, name="Workspace 1", ext_id=None, token="ws-SECRET-1")
    ]


async def test_workspaces_dashboards_and_clone_parse(conduit: Conduit, http: Recorder) -> None:
    http.get(
        V2 + "workspaces/",
        payload=[
            workspace_json(1, "ws-SECRET-1", ext_id="crm1"),
            workspace_json(2, "ws-SECRET-2"),
        ],
    )
    http.get(V2 + "dashboards/", payload=[{"id": 1, "name": "Sales Dashboard"}])
    http.post(
        V2 + "dashboards/1/clone/",
        payload={"id": 2, "name": "Sales Dashboard", "url": "https://dash.test/2"},
    )
    assert await conduit.workspaces.list() == [
        Workspace(id=1, name="Workspace 1", ext_id="crm1", token="ws-SECRET-1"),
        Workspace(id=2, name="Workspace 2", ext_id=None, token="ws-SECRET-2"),
    ]
    assert await conduit.dashboards.list() == [Dashboard(id=1, name="Sales Dashboard")]
    assert await conduit.dashboards.clone(1, workspace=2) == ClonedDashboard(
        id=2, name="Sales Dashboard", url="https://dash.test/2"
    )


async def test_integrations_accept_numeric_or_string_ids(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=company_json())
    http.get(
        LINK + "credentials/",
        payload=[
            {
                "id": 7,
                "name": "Google Ads",
                "credentials": [
                    {
                        "id": "c1",
                        "name": "ads@acme.test",
                        "created_at": "2024-01-02T03:04:05Z",
                        "accounts": [{"id": 55, "name": "Main", "native_id": "123-456"}],
                        "status": "ok",
                    }
                ],
            },
            {"id": "fb", "name": "Facebook Ads", "credentials": []},
        ],
    )
    integrations = await conduit.company("acme1").integrations()
    assert integrations == [
        Integration(
            id="7",
            name="Google Ads",
            credentials=[
                Credential(
                    id="c1",
                    name="ads@acme.test",
                    created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                    accounts=[Account(id="55", name="Main", native_id="123-456")],
                )
            ],
        ),
        Integration(id="fb", name="Facebook Ads", credentials=[]),
    ]


async def test_data_lake_files_parse(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=company_json())
    http.get(
        LINK + "data_lake/?integration=7&date_from=2024-01-01&date_to=2024-01-02",
        payload={
            "schema": [
                {
                    "date": "2024-01-01",
                    "url": "https://files.test/1.csv",
                    "service_status": "ok",
                    "data_status": "ready",
                    "data_updated_at": "2024-01-02T00:00:00Z",
                },
                {"date": "2024-01-02", "url": None},
            ]
        },
    )
    files = await conduit.company("acme1").data_lake(
        integration=7, date_from="2024-01-01", date_to="2024-01-02"
    )
    assert files == [
        DataLakeFile(
            date=date(2024, 1, 1),
            url="https://files.test/1.csv",
            service_status="ok",
            data_status="ready",
            data_updated_at=datetime(2024, 1, 2, tzinfo=UTC),
        ),
        DataLakeFile(date=date(2024, 1, 2), url=None),
    ]


def test_company_unstructures_back_to_the_wire_shape() -> None:
    payload = company_json(expires_at=1678898400)
    company = converter.structure(payload, Company)
    assert converter.unstructure(company) == payload


def test_models_are_frozen() -> None:
    ws = Workspace(id=1, name="W", token="ws-SECRET")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ws.token = "other"  # type: ignore[misc]


def test_unchecked_builds_the_same_frozen_object_as_init() -> None:
    from conduit_async.models import unchecked

    made = unchecked(Workspace)(7, "W", "ws-SECRET", None)
    assert type(made) is Workspace
    assert made == Workspace(id=7, name="W", token="ws-SECRET")
    assert hash(made) == hash(Workspace(id=7, name="W", token="ws-SECRET"))
    assert "ws-SECRET" not in repr(made)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.name = "other"  # type: ignore[misc]


def test_unchecked_refuses_what_it_cannot_build_and_falls_back_where_it_must() -> None:
    from conduit_async.models import unchecked

    @attrs.frozen
    class Weak:  # a weak-reference slot: CPython refuses to switch such a class
        x: int

    @attrs.frozen(weakref_slot=False)
    class Checked:
        x: int = attrs.field(validator=attrs.validators.instance_of(int))

    for cls in (Weak, Checked):
        with pytest.raises(TypeError, match=cls.__name__):
            unchecked(cls)

    @attrs.frozen(weakref_slot=False)
    class Base:
        x: int

    @attrs.frozen(weakref_slot=False)
    class Derived(Base):  # its layout is not its own slots alone: built slot by slot
        y: int

    made = unchecked(Derived)(1, 2)
    assert type(made) is Derived
    assert made == Derived(1, 2)


# -- malformed 2xx responses ------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "id",
        "created_at",
        "link_page",
        "link_page.enabled",
        "link_page.url",
        "api_token",
        "api_token.token",
        "api_token.expires_at",
    ],
)
async def test_missing_company_field_names_endpoint_and_field(
    conduit: Conduit, http: Recorder, field: str
) -> None:
    http.get(LINK + "company/acme1/", payload=_set(company_json(), field, ...))
    with pytest.raises(ResponseFormatError) as info:
        await conduit.companies.get("acme1")
    exc = info.value
    assert exc.endpoint == GET_COMPANY
    assert f"$.{field}" in str(exc)
    assert "required field missing" in str(exc)
    assert COMPANY_TOKEN not in str(exc)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("id", 1, "expected str, got int"),
        ("name", 5, "expected str, got int"),
        ("created_at", "yesterday", "not an ISO 8601 timestamp"),
        ("created_at", 1678898400, "expected an ISO 8601 string"),
        ("link_page.enabled", "yes", "expected bool, got str"),
        ("link_page.url", 5, "expected str, got int"),
        ("api_token.token", 12345, "expected str, got int"),
        ("api_token.expires_at", "soon", "expected a Unix timestamp"),
        ("api_token.expires_at", True, "expected a Unix timestamp, got bool"),
        ("api_token.expires_at", 1e20, "out of range"),
    ],
)
async def test_ill_typed_company_field_names_endpoint_and_field(
    conduit: Conduit, http: Recorder, field: str, value: Any, says: str
) -> None:
    http.post(LINK + "company/", payload=_set(company_json(), field, value))
    with pytest.raises(ResponseFormatError) as info:
        await conduit.companies.create("acme1")
    exc = info.value
    assert exc.endpoint == "POST /link/company/"
    assert str(exc).startswith("POST /link/company/: unexpected response")
    assert f"$.{field}" in str(exc)
    assert says in str(exc)
    assert COMPANY_TOKEN not in str(exc)


async def test_company_object_of_the_wrong_shape(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=company_json(api_token=COMPANY_TOKEN))
    with pytest.raises(ResponseFormatError) as info:
        await conduit.companies.get("acme1")
    assert "$.api_token" in str(info.value)
    assert COMPANY_TOKEN not in str(info.value)


async def test_a_bad_token_in_a_company_is_not_cached(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=_set(company_json(), "api_token.expires_at", "x"))
    http.get(LINK + "company/acme1/", payload=company_json(token="company-SECRET-2"))
    http.get(LINK + "credentials/", payload=[])
    with pytest.raises(ResponseFormatError):
        await conduit.companies.get("acme1")
    assert await conduit.company("acme1").integrations() == []
    assert http.sent[-1].token == "company-SECRET-2"


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"id": 1}, "expected a JSON array, got an object"),
        ("workspaces", "expected a JSON array, got a string"),
        ([1, 2], "$[0]"),
        ([{"id": "1", "name": "W", "token": "t"}], "$[0].id"),
        ([{"id": 1, "token": "t"}], "$[0].name"),
    ],
)
async def test_workspace_list_of_the_wrong_shape(
    conduit: Conduit, http: Recorder, payload: Any, says: str
) -> None:
    http.get(V2 + "workspaces/", payload=payload)
    with pytest.raises(ResponseFormatError) as info:
        await conduit.workspaces.list()
    assert info.value.endpoint == "GET /v2/workspaces/"
    assert says in str(info.value)


async def test_share_url_without_url(conduit: Conduit, http: Recorder) -> None:
    http.get(V2 + "dashboards/3/share/", payload={"link": "https://dash.test/3"})
    with pytest.raises(ResponseFormatError) as info:
        await conduit.dashboards.share_url(3)
    assert info.value.endpoint == "GET /v2/dashboards/{dashboard_id}/share/"
    assert "$.url" in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        {"url": "https://x.test/1"},
        {"url": "https://x.test/1", "extra": [1]},
        {"url": 5},
        {"url": None},
        {"link": "https://x.test/1"},
        ["https://x.test/1"],
        "https://x.test/1",
        None,
    ],
    ids=repr,
)
def test_a_url_answer_parses_by_hand_exactly_as_cattrs_would(payload: Any) -> None:
    from conduit_async.routes import _parse_url, _url

    def outcome(parse: Any) -> object:
        try:
            return parse(copy.deepcopy(payload), "GET /x")
        except ResponseFormatError as exc:
            return str(exc)

    assert outcome(_url) == outcome(lambda data, endpoint: _parse_url(data, endpoint).url)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (f"<html><body>Welcome, {ORG_TOKEN}</body></html>", "text/html"),
        (f'{{"id": 1, "token": "{ORG_TOKEN}"', "application/json"),
        (b"\xff\xfe\x00garbage", "application/octet-stream"),
        ("OK", "text/plain"),
    ],
)
async def test_non_json_2xx_body_is_a_format_error_without_the_body(
    conduit: Conduit, http: Recorder, body: str | bytes, content_type: str
) -> None:
    http.get(V2 + "workspaces/", body=body, content_type=content_type)
    with pytest.raises(ResponseFormatError) as info:
        await conduit.workspaces.list()
    exc = info.value
    assert exc.endpoint == "GET /v2/workspaces/"
    assert "not valid JSON" in str(exc)
    assert ORG_TOKEN not in str(exc)
    assert len(http.sent) == 1  # a format error is not retried


async def test_empty_2xx_body_where_a_list_is_due(conduit: Conduit, http: Recorder) -> None:
    http.get(V2 + "dashboards/", body="")
    with pytest.raises(ResponseFormatError, match="expected a JSON array, got null"):
        await conduit.dashboards.list()


async def test_oversized_body_is_refused(vt: VirtualTime, http: Recorder) -> None:
    http.get(V2 + "dashboards/", payload=[{"id": i, "name": "x" * 50} for i in range(100)])
    async with make_conduit(vt, max_response_bytes=1000) as conduit:
        with pytest.raises(ResponseFormatError, match="over 1000"):
            await conduit.dashboards.list()


# -- secrets stay out of repr and str ---------------------------------------------------


def _assert_hidden(obj: object, *secrets: str) -> None:
    for text in (repr(obj), str(obj)):
        for secret in secrets:
            assert secret not in text, text


def test_model_reprs_hide_tokens() -> None:
    expires = datetime(2023, 3, 15, 16, 40, tzinfo=UTC)
    ws = Workspace(id=1, name="W", ext_id="crm1", token="ws-SECRET-9")
    api_token = ApiToken(token=COMPANY_TOKEN, expires_at=expires)
    company = Company(
        id="acme1",
        name="Acme",
        created_at=expires,
        link_page=LinkPage(url=None, enabled=False),
        api_token=api_token,
    )
    lease = TokenLease(
        token=COMPANY_TOKEN, issued_at=T0, soft_at=T0 + 300, hard_at=T0 + 540, expires_at=T0 + 600
    )
    _assert_hidden(ws, "ws-SECRET-9")
    _assert_hidden(api_token, COMPANY_TOKEN)
    _assert_hidden(company, COMPANY_TOKEN)
    _assert_hidden(lease, COMPANY_TOKEN)
    # The fields are there, only hidden from repr.
    assert "crm1" in repr(ws)
    assert "expires_at" in repr(api_token)
    assert "acme1" in repr(company)
    assert ws.token == "ws-SECRET-9"
    assert lease.token == COMPANY_TOKEN


async def test_client_reprs_hide_tokens_even_with_tokens_cached(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(1, "ws-SECRET-1")])
    http.get(LINK + "company/acme1/", payload=company_json())
    await conduit.workspaces.list()
    await conduit.companies.get("acme1")
    secrets = (ORG_TOKEN, LINK_TOKEN, COMPANY_TOKEN, "ws-SECRET-1")
    _assert_hidden(conduit, *secrets)
    _assert_hidden(conduit.tokens, *secrets)
    _assert_hidden(conduit.company("acme1"), *secrets)
    _assert_hidden(conduit.workspace(1), *secrets)
    _assert_hidden(conduit.companies, *secrets)
    assert "https://api.test/v2/" in repr(conduit)
