"""Retries: the pure policy, and what the session does with it against a mocked server.

Every wait goes through the injected sleep of a virtual clock: no test waits for real.
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
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
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    Conduit,
    ConduitTimeoutError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from conduit_async._retry import parse_retry_after

COMPANY_1 = "company-SECRET-1"
COMPANY_2 = "company-SECRET-2"


def refused() -> aiohttp.ClientConnectorError:
    """A connection that was never made: nothing reached the server."""
    key = SimpleNamespace(host="api.test", port=443, ssl=True)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))  # type: ignore[arg-type]


def lost() -> list[BaseException]:
    """Failures after the request was sent: the server may have acted on it."""
    return [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        asyncio.TimeoutError(),
    ]


def trail(http: Recorder) -> list[tuple[str, str]]:
    """The requests sent, as (method, path after the host)."""
    return [(s.method, s.url.removeprefix("https://api.test")) for s in http.sent]


# -- the policy, pure -------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = RetryPolicy()
    assert policy.attempts == 3
    assert policy.base_delay == 0.5
    assert policy.max_delay == 8.0
    assert policy.max_retry_after == 60.0
    assert policy.retry_statuses == frozenset({408, 429, 500, 502, 503, 504})
    assert policy.sleep is asyncio.sleep
    assert RetryPolicy.never().attempts == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"base_delay": -1.0},
        {"max_delay": math.inf},
        {"max_retry_after": math.nan},
    ],
)
def test_policy_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("retry", "ceiling"), [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0)]
)
def test_backoff_doubles_up_to_the_cap(retry: int, ceiling: float) -> None:
    assert RetryPolicy(jitter=lambda: 0.0).backoff(retry) == 0.0
    assert RetryPolicy(jitter=lambda: 0.5).backoff(retry) == ceiling / 2
    assert RetryPolicy(jitter=lambda: 0.999).backoff(retry) == pytest.approx(ceiling * 0.999)


@settings(database=None, max_examples=200)
@given(
    retry=st.integers(min_value=1, max_value=100_000),
    jitter=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    base=st.floats(min_value=0.001, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=100.0),
)
def test_backoff_is_full_jitter_within_bounds(
    retry: int, jitter: float, base: float, cap: float
) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=cap, jitter=lambda: jitter)
    ceiling = cap if retry > 200 else min(cap, base * 2.0 ** (retry - 1))
    delay = policy.backoff(retry)
    assert 0.0 <= delay <= ceiling
    assert delay == pytest.approx(ceiling * jitter)


@pytest.mark.parametrize("retry", [1024, 1025, 10**6, 10**18])
def test_backoff_survives_huge_retry_numbers(retry: int) -> None:
    assert RetryPolicy(jitter=lambda: 0.5).backoff(retry) == 4.0
    assert RetryPolicy(base_delay=0.0, jitter=lambda: 0.5).backoff(retry) == 0.0


def test_delay_prefers_the_server_but_caps_it() -> None:
    policy = RetryPolicy(jitter=lambda: 0.5, max_retry_after=30.0)
    assert policy.delay(1, None) == 0.25
    assert policy.delay(3, None) == 1.0
    assert policy.delay(1, 12.0) == 12.0
    assert policy.delay(1, 0.0) == 0.0
    assert policy.delay(1, 1e9) == 30.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("99999999", 99999999.0),  # huge but readable: the policy caps it, not the parser
        ("-1", None),
        ("-0.5", None),
        ("NaN", None),
        ("nan", None),
        ("inf", None),
        ("1e400", None),
        ("soon", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, T0) == expected


def test_parse_retry_after_http_dates() -> None:
    vt = VirtualTime()
    assert parse_retry_after(vt.http_date(30), vt()) == 30.0
    assert parse_retry_after(vt.http_date(0), vt()) == 0.0
    assert parse_retry_after(vt.http_date(-3600), vt()) == 0.0  # a past date means now
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", vt()) == 0.0
    assert parse_retry_after(vt.http_date(86_400 * 365), vt()) == 86_400 * 365


# -- GET and DELETE: retried on the retryable statuses ---------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_get_is_retried_after_a_retryable_status(
    conduit: Conduit, http: Recorder, vt: VirtualTime, status: int
) -> None:
    http.get(V2 + "dashboards/", status=status, body="")
    http.get(V2 + "dashboards/", payload=[{"id": 1, "name": "D"}])
    dashboards = await conduit.dashboards.list()
    assert [d.id for d in dashboards] == [1]
    assert trail(http) == [("GET", "/v2/dashboards/")] * 2
    assert vt.sleeps == [0.25]  # backoff(1) = 0.5 * jitter 0.5


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (408, APIStatusError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
    ],
)
async def test_three_attempts_by_default(
    conduit: Conduit, http: Recorder, vt: VirtualTime, status: int, cls: type[Exception]
) -> None:
    http.get(V2 + "dashboards/", status=status, body="", repeat=True)
    with pytest.raises(cls):
        await conduit.dashboards.list()
    assert len(http.sent) == 3
    assert conduit.requests_sent == 3
    assert vt.sleeps == [0.25, 0.5]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, BadRequestError),
        (418, APIStatusError),
    ],
)
async def test_other_statuses_are_not_retried(
    conduit: Conduit, http: Recorder, vt: VirtualTime, status: int, cls: type[Exception]
) -> None:
    http.get(V2 + "dashboards/", status=status, body="", repeat=True)
    with pytest.raises(cls):
        await conduit.dashboards.list()
    assert len(http.sent) == 1
    assert vt.sleeps == []


@pytest.mark.parametrize("attempts", [1, 2, 5])
async def test_attempts_are_configurable(vt: VirtualTime, http: Recorder, attempts: int) -> None:
    http.get(V2 + "dashboards/", status=502, body="", repeat=True)
    retry = RetryPolicy(attempts=attempts, sleep=vt.sleep, jitter=lambda: 0.5)
    async with make_conduit(vt, retry=retry) as conduit:
        with pytest.raises(ServerError):
            await conduit.dashboards.list()
    assert len(http.sent) == attempts
    assert len(vt.sleeps) == attempts - 1


@pytest.mark.parametrize(
    "failure", [refused(), *lost(), aiohttp.ClientPayloadError("truncated")], ids=repr
)
async def test_get_is_retried_after_a_connection_failure(
    conduit: Conduit, http: Recorder, vt: VirtualTime, failure: BaseException
) -> None:
    http.get(V2 + "workspaces/", exception=failure)
    http.get(V2 + "workspaces/", exception=failure)
    http.get(V2 + "workspaces/", payload=[workspace_json(1, "ws-SECRET-1")])
    workspaces = await conduit.workspaces.list()
    assert [w.id for w in workspaces] == [1]
    assert len(http.sent) == 3
    assert vt.sleeps == [0.25, 0.5]


@pytest.mark.parametrize(
    ("failure", "cls"),
    [
        (refused(), TransportError),
        (aiohttp.ServerDisconnectedError(), TransportError),
        (asyncio.TimeoutError(), ConduitTimeoutError),
    ],
    ids=["refused", "disconnected", "timeout"],
)
async def test_connection_failures_give_up_after_three_attempts(
    conduit: Conduit, http: Recorder, failure: BaseException, cls: type[TransportError]
) -> None:
    http.get(V2 + "workspaces/", exception=failure, repeat=True)
    with pytest.raises(cls) as info:
        await conduit.workspaces.list()
    assert info.value.endpoint == "GET /v2/workspaces/"
    assert ORG_TOKEN not in str(info.value)
    assert len(http.sent) == 3


async def test_timeout_error_is_also_a_builtin_timeout(conduit: Conduit, http: Recorder) -> None:
    http.get(V2 + "workspaces/", exception=asyncio.TimeoutError(), repeat=True)
    with pytest.raises(TimeoutError):
        await conduit.workspaces.list()


async def test_delete_is_retried(conduit: Conduit, http: Recorder, vt: VirtualTime) -> None:
    http.delete(V2 + "workspaces/5/", status=503, body="")
    http.delete(V2 + "workspaces/5/", exception=aiohttp.ServerDisconnectedError())
    http.delete(V2 + "workspaces/5/", status=204, body="")
    assert await conduit.workspaces.disable(5) is None
    assert trail(http) == [("DELETE", "/v2/workspaces/5/")] * 3


async def test_delete_credential_is_retried(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    http.get(LINK + "company/acme1/", payload=company_json())
    http.delete(LINK + "credentials/9/", status=500, body="")
    http.delete(LINK + "credentials/9/", status=204, body="")
    assert await conduit.company("acme1").delete_credential(9) is None
    assert trail(http) == [
        ("GET", "/link/company/acme1/"),
        ("DELETE", "/link/credentials/9/"),
        ("DELETE", "/link/credentials/9/"),
    ]


# -- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "slept"),
    [
        (429, "7", 7.0),
        (429, "2.5", 2.5),
        (503, "7", 7.0),
        (429, "3600", 60.0),  # capped at max_retry_after
        (503, "99999999", 60.0),
        (429, "-5", 0.25),  # nonsense: the computed backoff instead
        (429, "soon", 0.25),
        (429, "NaN", 0.25),
    ],
)
async def test_retry_after_seconds_are_honoured_and_capped(
    conduit: Conduit,
    http: Recorder,
    vt: VirtualTime,
    status: int,
    retry_after: str,
    slept: float,
) -> None:
    http.get(V2 + "dashboards/", status=status, headers={"Retry-After": retry_after}, body="")
    http.get(V2 + "dashboards/", payload=[])
    assert await conduit.dashboards.list() == []
    assert vt.sleeps == [slept]
    assert len(http.sent) == 2


async def test_retry_after_http_date_is_honoured(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    http.get(V2 + "dashboards/", status=429, headers={"Retry-After": vt.http_date(20)})
    http.get(V2 + "dashboards/", payload=[])
    await conduit.dashboards.list()
    assert vt.sleeps == [20.0]


async def test_retry_after_http_date_far_ahead_is_capped(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    http.get(V2 + "dashboards/", status=503, headers={"Retry-After": vt.http_date(7200)})
    http.get(V2 + "dashboards/", payload=[])
    await conduit.dashboards.list()
    assert vt.sleeps == [60.0]


async def test_retry_after_in_the_past_retries_at_once(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    http.get(V2 + "dashboards/", status=429, headers={"Retry-After": vt.http_date(-60)})
    http.get(V2 + "dashboards/", payload=[])
    await conduit.dashboards.list()
    assert vt.sleeps == []
    assert len(http.sent) == 2


async def test_max_retry_after_is_configurable(vt: VirtualTime, http: Recorder) -> None:
    http.get(V2 + "dashboards/", status=429, headers={"Retry-After": "30"})
    http.get(V2 + "dashboards/", payload=[])
    retry = RetryPolicy(max_retry_after=5.0, sleep=vt.sleep)
    async with make_conduit(vt, retry=retry) as conduit:
        await conduit.dashboards.list()
    assert vt.sleeps == [5.0]


async def test_a_429_pauses_every_caller_of_the_client(vt: VirtualTime, http: Recorder) -> None:
    http.get(V2 + "dashboards/", status=429, headers={"Retry-After": "10"}, body="")
    http.get(V2 + "dashboards/", payload=[])
    http.get(V2 + "workspaces/", payload=[])
    arrived = False

    async def sleep(seconds: float) -> None:
        nonlocal arrived
        vt.sleeps.append(seconds)
        if not arrived:  # another caller arrives while the first waits out the 429
            arrived = True
            await conduit.workspaces.list()
        vt.now += seconds

    async with make_conduit(vt, retry=RetryPolicy(sleep=sleep)) as conduit:
        await conduit.dashboards.list()
    assert vt.sleeps == [10.0, 10.0]  # the newcomer waited out the same pause
    assert trail(http) == [
        ("GET", "/v2/dashboards/"),
        ("GET", "/v2/workspaces/"),
        ("GET", "/v2/dashboards/"),
    ]


# -- POST: retried only when that cannot create twice ---------------------------------


@pytest.mark.parametrize("failure", lost(), ids=repr)
async def test_company_create_after_a_lost_response_reconciles_via_get(
    conduit: Conduit, http: Recorder, failure: BaseException
) -> None:
    http.post(LINK + "company/", exception=failure)
    http.get(LINK + "company/acme1/", payload=company_json(token=COMPANY_2))
    http.get(LINK + "credentials/", payload=[])
    company = await conduit.companies.create("acme1", name="Acme", page_enabled=False)
    assert company.id == "acme1"
    assert company.name == "Acme"
    assert company.api_token.token == COMPANY_2
    assert trail(http) == [("POST", "/link/company/"), ("GET", "/link/company/acme1/")]
    assert http.sent[1].token == LINK_TOKEN
    # The reconciled company's token is cached like any other.
    await conduit.company("acme1").integrations()
    assert http.sent[-1].token == COMPANY_2
    assert len(http.sent) == 3


async def test_company_create_409_after_an_unknown_outcome_reconciles(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    http.post(LINK + "company/", exception=asyncio.TimeoutError())
    http.get(LINK + "company/acme1/", status=404, payload={"code": "not_found"})
    http.post(LINK + "company/", status=409, payload={"code": "exists"})
    http.get(LINK + "company/acme1/", payload=company_json())
    company = await conduit.companies.create("acme1", name="Acme")
    assert company.id == "acme1"
    assert trail(http) == [
        ("POST", "/link/company/"),
        ("GET", "/link/company/acme1/"),
        ("POST", "/link/company/"),
        ("GET", "/link/company/acme1/"),
    ]
    assert http.sent[0].json == http.sent[2].json == {"id": "acme1", "name": "Acme"}


async def test_company_create_409_on_a_clean_attempt_is_a_conflict(
    conduit: Conduit, http: Recorder
) -> None:
    http.post(LINK + "company/", status=409, payload={"code": "exists", "message": "taken"})
    with pytest.raises(ConflictError) as info:
        await conduit.companies.create("acme1")
    assert info.value.message == "taken"
    assert trail(http) == [("POST", "/link/company/")]


async def test_lost_create_does_not_adopt_a_different_existing_company(
    conduit: Conduit, http: Recorder
) -> None:
    http.post(LINK + "company/", exception=aiohttp.ServerDisconnectedError())
    http.get(LINK + "company/acme1/", payload=company_json(name="Someone else"), repeat=True)
    http.post(LINK + "company/", status=409, body="")
    with pytest.raises(ConflictError):
        await conduit.companies.create("acme1", name="Acme")
    assert trail(http) == [
        ("POST", "/link/company/"),
        ("GET", "/link/company/acme1/"),
        ("POST", "/link/company/"),
        ("GET", "/link/company/acme1/"),
    ]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_company_create_after_a_5xx_reconciles_then_retries(
    conduit: Conduit, http: Recorder, status: int
) -> None:
    http.post(LINK + "company/", status=status, body="")
    http.get(LINK + "company/acme1/", status=404, body="")
    http.post(LINK + "company/", status=201, payload=company_json())
    company = await conduit.companies.create("acme1", name="Acme")
    assert company.id == "acme1"
    assert trail(http) == [
        ("POST", "/link/company/"),
        ("GET", "/link/company/acme1/"),
        ("POST", "/link/company/"),
    ]


async def test_company_create_is_unknown_when_reconciling_fails(
    conduit: Conduit, http: Recorder
) -> None:
    http.post(LINK + "company/", exception=aiohttp.ServerDisconnectedError())
    http.get(LINK + "company/acme1/", status=500, body="", repeat=True)
    with pytest.raises(OutcomeUnknownError) as info:
        await conduit.companies.create("acme1")
    exc = info.value
    assert exc.endpoint == "POST /link/company/"
    assert isinstance(exc.cause, TransportError)
    assert isinstance(exc.__cause__, ServerError)
    # The GET was retried, the POST never repeated.
    assert trail(http) == [("POST", "/link/company/")] + [("GET", "/link/company/acme1/")] * 3


async def test_company_create_gives_up_after_three_lost_attempts(
    conduit: Conduit, http: Recorder
) -> None:
    http.post(LINK + "company/", exception=aiohttp.ServerDisconnectedError(), repeat=True)
    http.get(LINK + "company/acme1/", status=404, body="", repeat=True)
    with pytest.raises(TransportError):
        await conduit.companies.create("acme1")
    assert trail(http) == [("POST", "/link/company/"), ("GET", "/link/company/acme1/")] * 3


async def test_company_create_is_retried_when_the_connection_was_refused(
    conduit: Conduit, http: Recorder
) -> None:
    http.post(LINK + "company/", exception=refused())
    http.post(LINK + "company/", payload=company_json())
    company = await conduit.companies.create("acme1")
    assert company.id == "acme1"
    assert trail(http) == [("POST", "/link/company/")] * 2


@pytest.mark.parametrize(
    "failure", [{"status": 502, "body": ""}, {"exception": asyncio.TimeoutError()}], ids=repr
)
async def test_workspace_create_with_ext_id_reconciles_by_listing(
    conduit: Conduit, http: Recorder, failure: dict[str, Any]
) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(1, "ws-SECRET-1", ext_id="other")])
    http.post(V2 + "workspaces/", **failure)
    http.get(
        V2 + "workspaces/",
        payload=[
            workspace_json(1, "ws-SECRET-1", ext_id="other"),
            workspace_json(2, "ws-SECRET-2", ext_id="crm1", name="CRM"),
        ],
    )
    http.get(V2 + "dashboards/", payload=[])
    workspace = await conduit.workspaces.create("CRM", ext_id="crm1")
    assert (workspace.id, workspace.ext_id, workspace.token) == (2, "crm1", "ws-SECRET-2")
    assert trail(http) == [
        ("GET", "/v2/workspaces/"),  # is the ext_id free?
        ("POST", "/v2/workspaces/"),
        ("GET", "/v2/workspaces/"),  # the lost attempt's workspace
    ]
    # The reconciled workspace's token is used for its own calls, without another listing.
    await conduit.workspace(ext_id="crm1").dashboards.list()
    assert trail(http)[-1] == ("GET", "/v2/dashboards/")
    assert http.sent[-1].token == "ws-SECRET-2"


async def test_workspace_create_with_ext_id_retries_only_after_the_lost_attempt_settled(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    # "Not found" right after a lost attempt proves nothing: the server may still be
    # working on it. Look again once it has had the request timeout to land, then retry.
    others = [workspace_json(1, "ws-SECRET-1", ext_id="other")]
    http.get(V2 + "workspaces/", payload=others)
    http.post(V2 + "workspaces/", exception=aiohttp.ServerDisconnectedError())
    http.get(V2 + "workspaces/", payload=others)
    http.get(V2 + "workspaces/", payload=others)
    http.post(V2 + "workspaces/", payload=workspace_json(3, "ws-SECRET-3", ext_id="crm1"))
    workspace = await conduit.workspaces.create("CRM", ext_id="crm1")
    assert workspace.id == 3
    assert trail(http) == [
        ("GET", "/v2/workspaces/"),
        ("POST", "/v2/workspaces/"),
        ("GET", "/v2/workspaces/"),
        ("GET", "/v2/workspaces/"),
        ("POST", "/v2/workspaces/"),
    ]
    assert vt.sleeps[0] == 30.0  # the settle wait: the client's request timeout


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        ({"status": 500, "body": ""}, ServerError),
        ({"status": 502, "body": ""}, ServerError),
        ({"status": 503, "body": ""}, ServerError),
        ({"status": 504, "body": ""}, ServerError),
        ({"exception": asyncio.TimeoutError()}, ConduitTimeoutError),
        ({"exception": aiohttp.ServerDisconnectedError()}, TransportError),
    ],
    ids=["500", "502", "503", "504", "timeout", "disconnected"],
)
async def test_workspace_create_without_ext_id_is_not_retried(
    conduit: Conduit,
    http: Recorder,
    vt: VirtualTime,
    failure: dict[str, Any],
    cause: type[Exception],
) -> None:
    http.post(V2 + "workspaces/", **failure)
    http.post(V2 + "workspaces/", payload=workspace_json(3, "ws-SECRET-3"))
    with pytest.raises(OutcomeUnknownError) as info:
        await conduit.workspaces.create("CRM")
    assert type(info.value.cause) is cause
    assert info.value.endpoint == "POST /v2/workspaces/"
    assert "not retried" in str(info.value)
    assert trail(http) == [("POST", "/v2/workspaces/")]
    assert vt.sleeps == []


async def test_a_429_on_post_is_retried(conduit: Conduit, http: Recorder, vt: VirtualTime) -> None:
    http.post(V2 + "workspaces/", status=429, headers={"Retry-After": "3"}, body="")
    http.post(V2 + "workspaces/", payload=workspace_json(3, "ws-SECRET-3"))
    workspace = await conduit.workspaces.create("CRM")
    assert workspace.id == 3
    assert trail(http) == [("POST", "/v2/workspaces/")] * 2
    assert vt.sleeps == [3.0]


async def test_a_429_on_company_create_is_retried_without_reconciling(
    conduit: Conduit, http: Recorder
) -> None:
    http.post(LINK + "company/", status=429, body="")
    http.post(LINK + "company/", payload=company_json())
    await conduit.companies.create("acme1")
    assert trail(http) == [("POST", "/link/company/")] * 2


async def test_clone_is_retried_after_429_but_not_after_a_lost_response(
    conduit: Conduit, http: Recorder
) -> None:
    clone = V2 + "dashboards/1/clone/"
    http.post(clone, status=429, body="")
    http.post(clone, payload={"id": 2, "name": "D", "url": "https://dash.test/2"})
    assert (await conduit.dashboards.clone(1, workspace=7)).id == 2
    http.post(clone, exception=aiohttp.ServerDisconnectedError())
    http.post(clone, payload={"id": 3, "name": "D", "url": "https://dash.test/3"})
    with pytest.raises(OutcomeUnknownError):
        await conduit.dashboards.clone(1, workspace=7)
    assert trail(http) == [("POST", "/v2/dashboards/1/clone/")] * 3


@pytest.mark.parametrize(
    "failure", [{"status": 503, "body": ""}, {"exception": asyncio.TimeoutError()}], ids=repr
)
async def test_company_update_is_idempotent_and_retried(
    conduit: Conduit, http: Recorder, failure: dict[str, Any]
) -> None:
    http.post(LINK + "company/acme1/", **failure)
    http.post(LINK + "company/acme1/", payload=company_json(name="New"))
    company = await conduit.companies.update("acme1", name="New")
    assert company.name == "New"
    assert trail(http) == [("POST", "/link/company/acme1/")] * 2


# -- 401: one fresh token, never a loop -----------------------------------------------


async def test_401_with_a_company_token_retries_once_with_a_fresh_one(
    conduit: Conduit, http: Recorder, vt: VirtualTime
) -> None:
    http.get(LINK + "company/acme1/", payload=company_json(token=COMPANY_1))
    http.get(LINK + "credentials/", status=401, payload={"code": "token_expired"})
    http.get(LINK + "company/acme1/", payload=company_json(token=COMPANY_2))
    http.get(LINK + "credentials/", payload=[])
    assert await conduit.company("acme1").integrations() == []
    assert trail(http) == [
        ("GET", "/link/company/acme1/"),
        ("GET", "/link/credentials/"),
        ("GET", "/link/company/acme1/"),
        ("GET", "/link/credentials/"),
    ]
    assert [s.token for s in http.sent] == [LINK_TOKEN, COMPANY_1, LINK_TOKEN, COMPANY_2]
    assert vt.sleeps == []  # a token refresh is not a retry: no backoff
    # The fresh token is the one cached now.
    assert await conduit.company("acme1").token() == COMPANY_2


async def test_a_second_401_with_a_company_token_raises(conduit: Conduit, http: Recorder) -> None:
    http.get(LINK + "company/acme1/", payload=company_json(token=COMPANY_1))
    http.get(LINK + "company/acme1/", payload=company_json(token=COMPANY_2))
    http.get(LINK + "credentials/connect/7/", status=401, body="", repeat=True)
    with pytest.raises(AuthenticationError) as info:
        await conduit.company("acme1").connect_url(7)
    assert info.value.path == "/link/credentials/connect/7/"
    assert len(http.calls("GET", LINK + "credentials/connect/7/")) == 2
    assert len(http.calls("GET", LINK + "company/acme1/")) == 2
    assert COMPANY_2 not in str(info.value)


async def test_401_with_a_workspace_token_looks_the_workspace_up_again(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(4, "ws-OLD")])
    http.get(V2 + "dashboards/", status=401, body="")
    http.get(V2 + "workspaces/", payload=[workspace_json(4, "ws-NEW")])
    http.get(V2 + "dashboards/", payload=[{"id": 1, "name": "D"}])
    dashboards = await conduit.workspace(4).dashboards.list()
    assert [d.id for d in dashboards] == [1]
    assert [s.token for s in http.sent] == [ORG_TOKEN, "ws-OLD", ORG_TOKEN, "ws-NEW"]


async def test_a_second_401_with_a_workspace_token_raises(conduit: Conduit, http: Recorder) -> None:
    http.get(V2 + "workspaces/", payload=[workspace_json(4, "ws-OLD")])
    http.get(V2 + "workspaces/", payload=[workspace_json(4, "ws-NEW")])
    http.get(V2 + "dashboards/4/share/", status=401, body="", repeat=True)
    with pytest.raises(AuthenticationError):
        await conduit.workspace(4).dashboards.share_url(4)
    assert len(http.sent) == 4


async def test_401_with_the_organization_token_is_not_retried(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(V2 + "workspaces/", status=401, body="", repeat=True)
    with pytest.raises(AuthenticationError):
        await conduit.workspaces.list()
    assert len(http.sent) == 1
