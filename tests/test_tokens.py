"""The token broker on its own: expiry maths, single flight, windows, failures.

The broker is given a stub fetch (a function, not a server) so each rule is
tested directly; the end-to-end behaviour against the fake server is in
test_tokens_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

import pytest

from conduit_async import (
    AmbiguousWorkspaceError,
    AuthenticationError,
    ClientClosedError,
    InMemoryTokenStore,
    ResponseFormatError,
    ServerError,
    TokenBroker,
    TokenLease,
    Workspace,
)
from conduit_async.models import ApiToken
from conduit_async.testing import ManualClock
from conduit_async.tokens import InMemoryWorkspaceStore, lease_for

TTL = 600.0


def api_token(token: str, expires_at: float) -> ApiToken:
    return ApiToken(token=token, expires_at=datetime.fromtimestamp(expires_at, tz=timezone.utc))


class StubServer:
    """Issues company tokens on the shared clock; can be held open or made to fail."""

    def __init__(self, clock: ManualClock, ttl: float = TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self.fetches: Counter[str] = Counter()
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None
        self.workspaces: list[Workspace] = []
        self.listings = 0
        #: Where a listing goes, as `Workspaces.list` hands it to the broker.
        self.listed: Callable[[list[Workspace]], None] | None = None

    async def fetch(self, key: str) -> TokenLease:
        self.fetches[key] += 1
        sent_at = self.clock()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        issued = self.clock()
        return lease_for(
            api_token(f"tok-{key}-{self.fetches[key]}", issued + self.ttl),
            sent_at=sent_at,
            server_date=None,
        )

    async def list_workspaces(self) -> list[Workspace]:
        self.listings += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if self.listed is not None:
            self.listed(list(self.workspaces))
        return list(self.workspaces)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> StubServer:
    return StubServer(clock)


@pytest.fixture
async def broker(clock: ManualClock, server: StubServer):  # type: ignore[no-untyped-def]
    b = TokenBroker(fetch_company=server.fetch, list_workspaces=server.list_workspaces, clock=clock)
    server.listed = b.replace_workspaces
    yield b
    await b.aclose()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- expiry maths ------------------------------------------------------------------


def test_lease_counts_from_send_time_and_uses_the_server_date_to_cancel_clock_offset() -> None:
    # Server clock 120 s ahead: expires_at looks 720 s away locally, Date says 600 left.
    server_now = 1_000_120.0
    lease = lease_for(api_token("t", server_now + 600), sent_at=1_000_000.0, server_date=server_now)
    assert lease.expires_at == pytest.approx(1_000_000.0 + 599)  # one second for Date's rounding
    assert lease.hard_at == pytest.approx(1_000_000.0 + 599 * 0.9)
    assert lease.soft_at == pytest.approx(1_000_000.0 + 599 * 0.5)


def test_lease_with_a_server_clock_behind_still_lasts_its_lifetime() -> None:
    server_now = 1_000_000.0 - 120
    lease = lease_for(api_token("t", server_now + 600), sent_at=1_000_000.0, server_date=server_now)
    assert lease.lifetime == pytest.approx(599)


def test_lease_never_trusts_more_than_ten_minutes() -> None:
    lease = lease_for(api_token("t", 1_000_000.0 + 3600), sent_at=1_000_000.0, server_date=None)
    assert lease.lifetime == 600


def test_lease_of_an_already_expired_token_has_no_life() -> None:
    lease = lease_for(api_token("t", 999_000.0), sent_at=1_000_000.0, server_date=None)
    assert lease.lifetime == 0
    assert lease.soft_at == lease.hard_at == lease.expires_at == 1_000_000.0


@pytest.mark.parametrize("lifetime", [600.0, 4.0, 2.0, 0.4])
def test_margins_scale_with_the_lifetime(lifetime: float) -> None:
    lease = lease_for(api_token("t", 100.0 + lifetime), sent_at=100.0, server_date=None)
    assert lease.soft_at - 100.0 == pytest.approx(lifetime * 0.5)
    assert lease.expires_at - lease.hard_at == pytest.approx(lifetime * 0.1)


def test_jitter_moves_the_soft_deadline_earlier_by_at_most_a_tenth() -> None:
    early = lease_for(api_token("t", 700.0), sent_at=100.0, server_date=None, jitter=0.999)
    assert 100.0 + 600 * 0.4 <= early.soft_at < 100.0 + 600 * 0.5
    assert early.hard_at == pytest.approx(100.0 + 540)


def test_lease_repr_hides_the_token() -> None:
    lease = lease_for(api_token("very-secret", 700.0), sent_at=100.0, server_date=None)
    assert "very-secret" not in repr(lease)
    assert "very-secret" not in str(lease)


# -- the store -----------------------------------------------------------------------


def test_store_is_a_bounded_lru() -> None:
    store = InMemoryTokenStore(maxsize=2)
    leases = {k: lease_for(api_token(k, 700.0), sent_at=100.0, server_date=None) for k in "abc"}
    store.put("a", leases["a"])
    store.put("b", leases["b"])
    assert store.get("a") is leases["a"]  # a is now the most recently used
    store.put("c", leases["c"])
    assert store.get("b") is None
    assert store.get("a") is leases["a"] and store.get("c") is leases["c"]
    assert len(store) == 2


def test_store_discards_only_the_token_it_was_told_about() -> None:
    store = InMemoryTokenStore()
    store.put("a", lease_for(api_token("new", 700.0), sent_at=100.0, server_date=None))
    assert not store.discard("a", "old")
    assert store.get("a") is not None
    assert store.discard("a", "new")
    assert store.get("a") is None


async def test_broker_cache_stays_within_its_bound(clock: ManualClock, server: StubServer) -> None:
    broker = TokenBroker(
        fetch_company=server.fetch,
        list_workspaces=server.list_workspaces,
        clock=clock,
        store=InMemoryTokenStore(maxsize=50),
    )
    for i in range(200):
        await broker.company_token(f"c{i}")
    assert len(broker.store) == 50
    await broker.aclose()


# -- single flight ---------------------------------------------------------------------


async def test_ten_thousand_concurrent_callers_share_one_fetch(
    broker: TokenBroker, server: StubServer
) -> None:
    tokens = await asyncio.gather(*(broker.company_token("acme1") for _ in range(10_000)))
    assert server.fetches == {"acme1": 1}
    assert set(tokens) == {"tok-acme1-1"}


async def test_m_companies_cost_m_fetches(broker: TokenBroker, server: StubServer) -> None:
    ids = [f"co{i}" for i in range(100)]
    await asyncio.gather(*(broker.company_token(ids[i % 100]) for i in range(5_000)))
    assert sum(server.fetches.values()) == 100
    assert set(server.fetches.values()) == {1}


async def test_company_ids_are_compared_without_regard_to_case(
    broker: TokenBroker, server: StubServer
) -> None:
    a, b = await asyncio.gather(broker.company_token("Acme1"), broker.company_token("ACME1"))
    assert a == b and server.fetches == {"acme1": 1}


async def test_cancelling_the_first_caller_and_half_the_rest_cancels_nobody_else(
    broker: TokenBroker, server: StubServer
) -> None:
    server.gate = asyncio.Event()
    callers = [asyncio.create_task(broker.company_token("acme1")) for _ in range(100)]
    await settle()
    for task in callers[::2]:  # the first caller included
        task.cancel()
    await settle()
    server.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
    assert len(cancelled) == 50
    assert [r for r in results if not isinstance(r, BaseException)] == ["tok-acme1-1"] * 50
    assert server.fetches == {"acme1": 1}
    assert broker.inflight == 0


async def test_a_fetch_whose_callers_all_left_still_fills_the_cache(
    broker: TokenBroker, server: StubServer
) -> None:
    server.gate = asyncio.Event()
    callers = [asyncio.create_task(broker.company_token("acme1")) for _ in range(3)]
    await settle()
    for task in callers:
        task.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    assert broker.inflight == 1
    server.gate.set()
    await settle()
    assert broker.inflight == 0
    assert await broker.company_token("acme1") == "tok-acme1-1"
    assert server.fetches == {"acme1": 1}


async def test_close_cancels_fetches_under_way_and_their_waiters_get_client_closed(
    broker: TokenBroker, server: StubServer
) -> None:
    server.gate = asyncio.Event()
    callers = [asyncio.create_task(broker.company_token("acme1")) for _ in range(5)]
    callers.append(asyncio.create_task(broker.workspace(1, None)))
    await settle()
    await broker.aclose()
    assert broker.inflight == 0
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, ClientClosedError) for r in results), results
    # Nobody cancelled the callers: their tasks end with the error, not cancelled.
    assert not any(task.cancelled() for task in callers)
    with pytest.raises(ClientClosedError):
        await broker.company_token("acme2")


async def test_a_caller_cancelled_while_the_client_closes_stays_cancelled(
    broker: TokenBroker, server: StubServer
) -> None:
    server.gate = asyncio.Event()
    caller = asyncio.create_task(broker.company_token("acme1"))
    await settle()
    caller.cancel()
    await broker.aclose()
    with pytest.raises(asyncio.CancelledError):
        await caller


# -- the three windows -----------------------------------------------------------------


async def test_fresh_token_is_served_without_any_fetch(
    broker: TokenBroker, server: StubServer, clock: ManualClock
) -> None:
    await broker.company_token("acme1")
    clock.advance(TTL * 0.39)
    for _ in range(100):
        assert await broker.company_token("acme1") == "tok-acme1-1"
    assert server.fetches["acme1"] == 1


async def test_in_the_soft_window_no_caller_waits_and_exactly_one_refresh_runs(
    broker: TokenBroker, server: StubServer, clock: ManualClock
) -> None:
    await broker.company_token("acme1")
    clock.advance(TTL * 0.6 + 1)  # past any jittered soft deadline, before the hard one
    server.gate = asyncio.Event()  # the refresh cannot finish: a caller that waited would hang
    tokens = await asyncio.wait_for(
        asyncio.gather(*(broker.company_token("acme1") for _ in range(1_000))), timeout=5
    )
    assert set(tokens) == {"tok-acme1-1"}
    assert server.fetches["acme1"] == 2
    assert broker.stats.background_refreshes == 1
    server.gate.set()
    await settle()
    assert await broker.company_token("acme1") == "tok-acme1-2"


async def test_in_the_hard_window_callers_wait_for_the_refresh(
    broker: TokenBroker, server: StubServer, clock: ManualClock
) -> None:
    await broker.company_token("acme1")
    clock.advance(TTL * 0.95)
    server.gate = asyncio.Event()
    waiting = [asyncio.create_task(broker.company_token("acme1")) for _ in range(10)]
    await settle()
    assert not any(t.done() for t in waiting)
    server.gate.set()
    assert set(await asyncio.gather(*waiting)) == {"tok-acme1-2"}
    assert server.fetches["acme1"] == 2


async def test_hard_window_callers_join_a_background_refresh_already_running(
    broker: TokenBroker, server: StubServer, clock: ManualClock
) -> None:
    await broker.company_token("acme1")
    clock.advance(TTL * 0.7)
    server.gate = asyncio.Event()
    assert await broker.company_token("acme1") == "tok-acme1-1"  # starts the refresh
    clock.advance(TTL * 0.25)
    waiter = asyncio.create_task(broker.company_token("acme1"))
    await settle()
    server.gate.set()
    assert await waiter == "tok-acme1-2"
    assert server.fetches["acme1"] == 2


async def test_a_failed_background_refresh_keeps_the_token_and_backs_off(
    broker: TokenBroker, server: StubServer, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await broker.company_token("acme1")
    clock.advance(TTL * 0.7)
    server.fail_with = ServerError(status=503, method="GET", path="/link/company/acme1/")
    assert await broker.company_token("acme1") == "tok-acme1-1"
    await settle()
    assert broker.stats.refresh_failures == 1
    # Within the backoff no new refresh starts; the valid token is still served.
    assert await broker.company_token("acme1") == "tok-acme1-1"
    await settle()
    assert server.fetches["acme1"] == 2
    clock.advance(TTL * 0.02 + 0.01)
    assert await broker.company_token("acme1") == "tok-acme1-1"
    await settle()
    assert server.fetches["acme1"] == 3
    assert broker.stats.refresh_failures == 2
    # The second backoff is twice as long.
    clock.advance(TTL * 0.02 + 0.01)
    await broker.company_token("acme1")
    await settle()
    assert server.fetches["acme1"] == 3
    server.fail_with = None
    clock.advance(TTL * 0.02)
    await broker.company_token("acme1")
    await settle()
    assert await broker.company_token("acme1") == "tok-acme1-4"
    assert "tok-acme1" not in caplog.text


async def test_past_the_hard_deadline_all_waiters_get_the_same_error(
    broker: TokenBroker, server: StubServer, clock: ManualClock
) -> None:
    await broker.company_token("acme1")
    clock.advance(TTL * 0.95)
    server.gate = asyncio.Event()
    failure = ServerError(status=502, method="GET", path="/link/company/acme1/")
    server.fail_with = failure
    waiting = [asyncio.create_task(broker.company_token("acme1")) for _ in range(20)]
    await settle()
    server.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(r is failure for r in results)
    assert server.fetches["acme1"] == 2


@pytest.mark.parametrize(
    ("expires_in", "date_ahead"),
    [(-30.0, None), (0.0, None), (600.0, 3600.0), (0.5, 0.0)],
    ids=["expires_at-past", "expires_at-now", "date-far-ahead", "under-a-second"],
)
async def test_a_token_issued_already_expired_fails_every_waiter_and_is_not_kept(
    broker: TokenBroker, server: StubServer, clock: ManualClock,
    expires_in: float, date_ahead: float | None,
) -> None:  # fmt: skip
    async def fetch(key: str) -> TokenLease:
        server.fetches[key] += 1
        await server.gate.wait()  # type: ignore[union-attr]
        now = clock()
        date = None if date_ahead is None else now + date_ahead
        return lease_for(api_token("dead-token", now + expires_in), sent_at=now, server_date=date)

    broker.fetch_company = fetch
    server.gate = asyncio.Event()
    waiting = [asyncio.create_task(broker.company_token("acme1")) for _ in range(10)]
    await settle()
    server.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, ResponseFormatError) for r in results)
    assert "already expired" in str(results[0]) and "dead-token" not in str(results[0])
    assert server.fetches["acme1"] == 1
    assert broker.cached_company_token("acme1") is None
    with pytest.raises(ResponseFormatError):
        await broker.company_token("acme1")
    assert server.fetches["acme1"] == 2  # one fetch per call, never a loop
    assert broker.stats.dead_tokens == 2


# -- refusals --------------------------------------------------------------------------


async def test_a_refused_token_is_dropped_and_fetched_once_for_everyone(
    broker: TokenBroker, server: StubServer
) -> None:
    old = await broker.company_token("acme1")
    await asyncio.gather(*(broker.company_refused("acme1", old) for _ in range(50)))
    tokens = await asyncio.gather(*(broker.company_token("acme1") for _ in range(50)))
    assert set(tokens) == {"tok-acme1-2"}
    assert server.fetches["acme1"] == 2


async def test_a_stale_refusal_does_not_throw_away_a_newer_token(
    broker: TokenBroker, server: StubServer
) -> None:
    old = await broker.company_token("acme1")
    await broker.company_refused("acme1", old)
    new = await broker.company_token("acme1")
    await broker.company_refused("acme1", old)  # a late 401 for the old token
    assert await broker.company_token("acme1") == new
    assert server.fetches["acme1"] == 2


async def test_a_slow_response_does_not_replace_a_newer_token(
    broker: TokenBroker, clock: ManualClock
) -> None:
    newer = lease_for(api_token("newer", clock() + 600), sent_at=clock(), server_date=None)
    older = lease_for(api_token("older", clock() + 590), sent_at=clock() - 10, server_date=None)
    broker.remember_company("acme1", newer)
    broker.remember_company("acme1", older)
    assert await broker.company_token("acme1") == "newer"


# -- workspaces ------------------------------------------------------------------------


async def test_workspace_cache_miss_lists_once_for_all_callers(
    broker: TokenBroker, server: StubServer
) -> None:
    server.workspaces = [
        Workspace(id=i, name=f"W{i}", ext_id=f"crm{i}", token=f"wt{i}") for i in range(5)
    ]
    found = await asyncio.gather(
        *(broker.workspace(i % 5, None) for i in range(500)),
        *(broker.workspace(None, f"crm{i % 5}") for i in range(500)),
    )
    assert server.listings == 1
    assert {w.token for w in found} == {f"wt{i}" for i in range(5)}


async def test_unknown_workspace_is_none_after_one_listing(
    broker: TokenBroker, server: StubServer
) -> None:
    # The broker only says "not there"; the resource maps that to NotFoundError
    # (tested through `conduit.workspace(...).get()` in test_client.py).
    server.workspaces = [Workspace(id=1, name="W1", token="wt1")]
    assert await broker.workspace(7, None) is None
    assert await broker.workspace(None, "nope") is None
    assert server.listings == 2


async def test_refused_workspace_token_is_looked_up_again(
    broker: TokenBroker, server: StubServer
) -> None:
    server.workspaces = [Workspace(id=1, name="W1", token="old")]
    ws = await broker.workspace(1, None)
    server.workspaces = [Workspace(id=1, name="W1", token="new")]
    await asyncio.gather(*(broker.workspace_refused(1, None, ws.token) for _ in range(10)))
    found = await asyncio.gather(*(broker.workspace(1, None) for _ in range(10)))
    assert {w.token for w in found} == {"new"}
    assert server.listings == 2
    await broker.workspace_refused(1, None, "old")  # stale: keeps the new one
    assert (await broker.workspace(1, None)).token == "new"


async def test_a_failed_workspace_listing_reaches_every_waiter(
    broker: TokenBroker, server: StubServer
) -> None:
    server.gate = asyncio.Event()
    server.fail_with = AuthenticationError(status=401, method="GET", path="/v2/workspaces/")
    waiting = [asyncio.create_task(broker.workspace(1, None)) for _ in range(5)]
    await settle()
    server.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert server.listings == 1


async def test_background_refreshes_are_capped_and_the_rest_start_later(
    clock: ManualClock, server: StubServer
) -> None:
    broker = TokenBroker(
        fetch_company=server.fetch,
        list_workspaces=server.list_workspaces,
        clock=clock,
        max_background_refreshes=4,
    )
    ids = [f"c{i}" for i in range(10)]
    for cid in ids:
        await broker.company_token(cid)
    clock.advance(TTL * 0.7)
    server.gate = asyncio.Event()
    for cid in ids:  # every token is stale and still served at once
        assert await broker.company_token(cid) == f"tok-{cid}-1"
    assert broker.inflight == 4
    server.gate.set()
    for _ in range(3):  # the others start on later calls, four at a time
        await settle()
        assert broker.inflight <= 4
        for cid in ids:
            await broker.company_token(cid)
    await settle()
    assert all(server.fetches[cid] == 2 for cid in ids)
    assert broker.stats.background_refreshes == 10
    await broker.aclose()


def test_workspace_store_is_a_bounded_lru_with_its_ext_id_index() -> None:
    store = InMemoryWorkspaceStore(maxsize=2)
    a, b, c = (Workspace(id=i, name=n, ext_id=n, token=f"t{i}") for i, n in enumerate("abc", 1))
    for ws in (a, b):
        store.put(ws)
    assert store.get(1) is a  # a is now the most recently used
    store.put(c)
    assert store.get(2) is None and store.by_ext_id("b") is None  # evicted from the index too
    assert store.by_ext_id("a") is a and store.by_ext_id("c") is c
    assert len(store) == 2


async def test_broker_workspace_cache_stays_within_its_bound(
    clock: ManualClock, server: StubServer
) -> None:
    broker = TokenBroker(
        fetch_company=server.fetch,
        list_workspaces=server.list_workspaces,
        clock=clock,
        store=InMemoryTokenStore(maxsize=50),
    )
    broker.remember_workspaces(Workspace(id=i, name="W", token=f"t{i}") for i in range(1, 201))
    assert broker.cached_workspace(200, None) is not None
    assert broker.cached_workspace(1, None) is None
    await broker.aclose()


async def test_an_ext_id_two_cached_workspaces_share_is_ambiguous_until_one_goes(
    broker: TokenBroker, server: StubServer
) -> None:
    server.workspaces = [
        Workspace(id=7, name="A", ext_id="crm1", token="t7"),
        Workspace(id=3, name="B", ext_id="crm1", token="t3"),
    ]
    for _ in range(2):
        with pytest.raises(AmbiguousWorkspaceError) as caught:
            await broker.workspace(None, "crm1")
        assert caught.value.workspace_ids == (3, 7)
        with pytest.raises(AmbiguousWorkspaceError):
            broker.cached_workspace(None, "crm1")
    assert server.listings == 1
    broker.forget_workspace(7)
    assert broker.cached_workspace(None, "crm1") == server.workspaces[1]
    # A created workspace reusing an ext_id in use makes it ambiguous at once.
    broker.remember_workspaces([Workspace(id=9, name="C", ext_id="crm1", token="t9")])
    with pytest.raises(AmbiguousWorkspaceError, match="3, 9"):
        broker.cached_workspace(None, "crm1")
