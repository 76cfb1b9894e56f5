"""The token broker against the fake server, over loopback, on a shared virtual clock.

What a web app serving many companies relies on: no request ever carries an
expired token, refreshes are few and predictable, clock offsets are absorbed,
refusals cost one refresh, and no token ever shows up in logs or reprs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

import pytest

from conduit_async import (
    AmbiguousWorkspaceError,
    AuthenticationError,
    ClientClosedError,
    Conduit,
    NotFoundError,
    ResponseFormatError,
    RetryPolicy,
)
from conduit_async.testing import FakeConduit, Fault, ManualClock

TTL = 600.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeConduit]:
    async with FakeConduit(clock=clock, token_ttl=TTL) as server:
        yield server


@pytest.fixture
async def conduit(fake: FakeConduit, clock: ManualClock) -> AsyncIterator[Conduit]:
    async with fake.client(
        clock=clock,
        retry=RetryPolicy(sleep=clock.sleep),
        seed=1,
    ) as client:
        yield client


async def drain(conduit: Conduit) -> None:
    """Let background refreshes finish (they run over real loopback)."""
    for _ in range(200):
        if conduit.tokens.inflight == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("background refreshes did not finish")


async def test_thirty_minutes_of_traffic_never_send_an_expired_token(
    fake: FakeConduit, conduit: Conduit, clock: ManualClock
) -> None:
    ids = [f"tenant{i}" for i in range(20)]
    await asyncio.gather(*(conduit.companies.create(cid) for cid in ids))
    step = 5.0
    for _ in range(int(30 * 60 / step)):
        clock.advance(step)
        await asyncio.gather(*(conduit.company(cid).integrations() for cid in ids))
        await drain(conduit)
    assert fake.stats.expired_token_requests == 0
    assert fake.stats.count("GET /link/credentials/", 401) == 0
    # A refresh starts once 40-50% of a ~599 s life is left, seen within one step.
    lifetime = TTL - 1
    most = 1 + math.ceil(30 * 60 / (lifetime * 0.5))
    least = 1 + math.floor(30 * 60 / (lifetime * 0.6 + step))
    for cid in ids:
        assert least <= fake.stats.tokens_issued[cid] <= most, cid
    # Every refresh happened in the background: callers never waited on a fetch.
    assert conduit.tokens.stats.background_refreshes == conduit.tokens.stats.company_fetches


@pytest.mark.parametrize("offset", [120.0, -120.0])
async def test_server_clock_offset_never_leaves_less_than_the_hard_margin(
    fake: FakeConduit, conduit: Conduit, clock: ManualClock, offset: float
) -> None:
    fake.clock_offset = offset
    await conduit.companies.create("acme1")
    for _ in range(20 * 60 // 7):
        clock.advance(7)
        token = await conduit.companies.token("acme1")
        grant = fake.issued_tokens()[token]
        server_now = clock() + offset
        assert grant.expires_at is not None
        # The hard margin is a tenth of the life; one second goes to Date's rounding.
        assert grant.expires_at - server_now >= TTL * 0.1 - 1.0
        await conduit.company("acme1").integrations()
        await drain(conduit)
    assert fake.stats.expired_token_requests == 0


async def test_concurrent_refusals_cost_one_refresh_and_one_retry_each(
    fake: FakeConduit, conduit: Conduit
) -> None:
    company = await conduit.companies.create("acme1")
    fake.revoke_token(company.api_token.token)
    issued_before = fake.stats.tokens_issued["acme1"]
    k = 50
    results = await asyncio.gather(*(conduit.company("acme1").integrations() for _ in range(k)))
    assert len(results) == k
    assert fake.stats.count("GET /link/credentials/", 401) == k
    assert fake.stats.count("GET /link/credentials/", 200) == k
    assert fake.stats.tokens_issued["acme1"] == issued_before + 1


async def test_a_token_refused_again_after_refresh_is_an_error_not_a_loop(
    fake: FakeConduit, conduit: Conduit
) -> None:
    company = await conduit.companies.create("acme1")
    fake.revoke_token(company.api_token.token)
    original = conduit.tokens.fetch_company

    async def fetch_then_revoke(key: str):  # type: ignore[no-untyped-def]
        lease = await original(key)
        fake.revoke_token(lease.token)  # the fresh token is refused too
        return lease

    conduit.tokens.fetch_company = fetch_then_revoke
    with pytest.raises(AuthenticationError):
        await conduit.company("acme1").integrations()
    assert fake.stats.count("GET /link/credentials/", 401) == 2


async def test_workspace_scoped_calls_use_the_workspace_token(
    fake: FakeConduit, conduit: Conduit
) -> None:
    created = await conduit.workspaces.create("Acme", ext_id="crm1")
    clone = await conduit.dashboards.clone(1, workspace=created.id)
    fake.stats.reset()
    views = [conduit.workspace(created.id), conduit.workspace(ext_id="crm1")]
    for view in views:
        listed = await view.dashboards.list()
        assert [d.id for d in listed] == [clone.id]
        assert (await view.dashboards.share_url(clone.id)).startswith("http")
    assert fake.stats.count("GET /v2/workspaces/") == 0  # the create filled the cache


async def test_cold_workspace_lookups_share_one_listing(
    fake: FakeConduit, conduit: Conduit
) -> None:
    for i in range(5):
        fake.add_workspace(f"W{i}", ext_id=f"crm{i}")
    await asyncio.gather(
        *(conduit.workspace(ext_id=f"crm{i % 5}").dashboards.list() for i in range(100))
    )
    assert fake.stats.count("GET /v2/workspaces/") == 1


async def test_revoked_workspace_token_is_looked_up_again_once(
    fake: FakeConduit, conduit: Conduit
) -> None:
    ws = await conduit.workspaces.create("Acme", ext_id="crm1")
    fake.revoke_token(ws.token)
    listings = fake.stats.count("GET /v2/workspaces/")  # create checked the ext_id is free
    await asyncio.gather(*(conduit.workspace(ws.id).dashboards.list() for _ in range(20)))
    assert fake.stats.count("GET /v2/dashboards/", 401) == 20
    assert fake.stats.count("GET /v2/workspaces/") == listings + 1


async def test_disabled_workspace_is_not_found(fake: FakeConduit, conduit: Conduit) -> None:
    ws = await conduit.workspaces.create("Acme", ext_id="crm1")
    await conduit.workspaces.disable(ws.id)
    with pytest.raises(NotFoundError, match="unknown or disabled"):
        await conduit.workspace(ws.id).dashboards.list()
    with pytest.raises(NotFoundError):
        await conduit.workspace(ext_id="crm1").dashboards.list()


async def test_a_batch_then_company_calls_fetch_no_extra_tokens(
    fake: FakeConduit, conduit: Conduit
) -> None:
    ids = [f"c{i}" for i in range(50)]
    await asyncio.gather(*(conduit.companies.create(cid) for cid in ids))
    await asyncio.gather(*(conduit.company(cid).connect_url(1) for cid in ids))
    assert fake.stats.count("GET /link/company/{cid}/") == 0
    assert conduit.tokens.stats.company_fetches == 0


async def test_tokens_never_reach_logs_reprs_or_errors(
    fake: FakeConduit, conduit: Conduit, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    company = await conduit.companies.create("acme1", name="Acme")
    seen += [repr(company), str(company), repr(conduit), repr(conduit.tokens)]
    seen.append(repr(conduit.company("acme1")))
    ws = await conduit.workspaces.create("W", ext_id="x1")
    seen += [repr(ws), repr(await conduit.workspaces.list())]
    fake.revoke_token(company.api_token.token)
    await conduit.company("acme1").integrations()
    clock.advance(TTL * 0.7)
    await conduit.companies.token("acme1")
    await drain(conduit)
    clock.advance(TTL)
    await conduit.company("acme1").integrations()
    for call in (
        conduit.companies.create("acme1"),
        conduit.company("nosuch").integrations(),
        conduit.company("acme1").connect_url(999_999),
    ):
        try:
            await call
        except Exception as exc:
            seen += [str(exc), repr(exc), str(getattr(exc, "body", ""))]
    seen.append(repr(conduit.tokens.store.get("acme1")))
    captured = caplog.text + "\n".join(seen)
    tokens = list(fake.issued_tokens())
    assert len(tokens) > 4
    for token in tokens:
        assert token not in captured


async def test_a_token_issued_already_expired_is_never_sent_and_fails_the_call(
    fake: FakeConduit, conduit: Conduit
) -> None:
    fake.token_ttl = 0.25  # less than the second lost to Date's rounding: dead on arrival
    await conduit.companies.create("acme1")
    issued = fake.stats.tokens_issued["acme1"]
    for _ in range(20):
        with pytest.raises(ResponseFormatError, match="already expired") as caught:
            await conduit.company("acme1").integrations()
        assert "response's Date" in str(caught.value)
    # Concurrent callers share the one fetch and its error.
    results = await asyncio.gather(
        *(conduit.company("acme1").integrations() for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, ResponseFormatError) for r in results)
    assert fake.stats.expired_token_requests == 0
    assert fake.stats.count("GET /link/credentials/") == 0
    assert issued + 20 <= fake.stats.tokens_issued["acme1"] <= issued + 21  # one fetch a call
    assert conduit.tokens.stats.dead_tokens == fake.stats.tokens_issued["acme1"] - issued
    for token in fake.issued_tokens():
        assert token not in str(caught.value) and token not in repr(caught.value)
    fake.token_ttl = TTL  # the server mends its ways: calls work again
    assert await conduit.company("acme1").integrations() is not None


async def test_closing_the_client_gives_token_waiters_client_closed_not_cancelled(
    fake: FakeConduit, conduit: Conduit
) -> None:
    await conduit.companies.create("acme1")
    conduit.tokens.store.discard("acme1", conduit.tokens.store.get("acme1").token)  # type: ignore[union-attr]
    fake.faults.script("GET /link/company/{cid}/", [Fault.latency(30)])
    callers = [asyncio.create_task(conduit.company("acme1").integrations()) for _ in range(5)]
    for _ in range(50):
        await asyncio.sleep(0.01)
        if fake.stats.count("GET /link/company/{cid}/") or conduit.tokens.inflight:
            break
    await conduit.close()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, ClientClosedError) for r in results), results
    assert not any(task.cancelled() for task in callers)


async def test_an_ext_id_shared_by_two_workspaces_is_ambiguous_for_every_lookup(
    fake: FakeConduit, conduit: Conduit
) -> None:
    first = fake.add_workspace("A", ext_id="crm1")
    second = fake.add_workspace("B", ext_id="crm1")
    fake.add_workspace("C", ext_id="crm2")
    for _ in range(2):  # cold (one listing), then from the cache: the same answer
        with pytest.raises(AmbiguousWorkspaceError) as caught:
            await conduit.workspace(ext_id="crm1").dashboards.list()
        assert caught.value.workspace_ids == tuple(sorted((first.id, second.id)))
        assert str(first.id) in str(caught.value) and str(second.id) in str(caught.value)
    with pytest.raises(AmbiguousWorkspaceError):
        await conduit.workspace(ext_id="crm1").get()
    # By id each one is still reachable, and the other ext_id is not affected.
    assert (await conduit.workspace(first.id).get()).name == "A"
    assert (await conduit.workspace(ext_id="crm2").get()).name == "C"
    assert fake.stats.count("GET /v2/workspaces/") == 1
