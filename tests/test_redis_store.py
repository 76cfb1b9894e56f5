"""The shared token store against a real redis-server: several clients (each standing for
a worker process, with its own store and connections) and the fake Conduit server.

What many workers rely on: one fetch per company per refresh across all of them, a new
token reaching every worker at once, two Link APPs kept apart, refusals that never drop
a newer token, a dead lock holder or a dead Redis costing no failed call, and nothing
secret stored or named in clear.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis_support import RedisServer, require_redis

from conduit_async import Conduit, ConfigurationError, RetryPolicy
from conduit_async.testing import FakeConduit, Fault, ManualClock

KEY = "q2yGm9cS7wq1n0b3Jb0l6Yv9m1hJrZ0u0kQw3cA5e8M="  # 32 bytes, urlsafe base64
TTL = 600.0


@pytest.fixture(scope="module")
def redis_binary() -> str:
    return require_redis()


@pytest.fixture(scope="module")
def shared_redis(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(shared_redis: RedisServer) -> RedisServer:
    shared_redis.command("FLUSHALL")
    return shared_redis


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to kill and restart."""
    server = RedisServer(redis_binary, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeConduit]:
    async with FakeConduit(clock=clock, token_ttl=TTL) as server:
        yield server


def store(url: str, **options: object):  # type: ignore[no-untyped-def]
    from conduit_async.stores import RedisTokenStore
    from conduit_async.stores._breaker import Breaker

    options.setdefault("key", KEY)
    # A busy machine must not pass for a slow Redis: the counts asserted here assume
    # Redis answers. (A dead Redis refuses connections at once, whatever the timeout.)
    options.setdefault("op_timeout", 2.0)
    client = RedisTokenStore.from_url(url, **options)  # type: ignore[arg-type]
    # Probe a dead Redis again within a tenth of a second, so the tests stay fast.
    client._breaker = Breaker(first_backoff=0.05, max_backoff=0.2)
    return client


@pytest.fixture
async def workers(
    fake: FakeConduit, clock: ManualClock
) -> AsyncIterator[Callable[..., list[Conduit]]]:
    """`workers(url, n)`: n clients of the fake, each with its own store on `url`."""
    made: list[Conduit] = []

    def make(
        url: str, n: int, *, fake_server: FakeConduit = fake, timeout: float = 30.0,
        **options: object,
    ) -> list[Conduit]:  # fmt: skip
        clients = [
            Conduit(
                fake_server.org_token,
                fake_server.link_token,
                base_url=fake_server.base_url,
                link_base_url=fake_server.link_base_url,
                clock=clock,
                retry=RetryPolicy(sleep=clock.sleep),
                token_store=store(url, **options),
                timeout=timeout,
                seed=i,
            )
            for i in range(n)
        ]
        made.extend(clients)
        return clients

    yield make
    for client in made:
        await client.close()


async def eventually(check: Callable[[], bool], what: str, seconds: float = 3.0) -> None:
    """Real time: pub/sub crosses a real socket."""
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {seconds} s: {what}")


def leases(redis: RedisServer) -> int:
    return sum(b":lease:" in key for key in redis.dump())


def issued(fake: FakeConduit) -> set[str]:
    return set(fake._state.tokens)


#: Commands of a connection's handshake, of the subscription, of the test itself, and those
#: the scripts run inside Redis (counted there too, but no round trip of the client's).
_NOT_READS = {
    *("client|setinfo", "hello", "select", "subscribe", "ping", "info", "config|resetstat"),
    *("get", "set", "del"),
}


def commands(redis: RedisServer) -> dict[str, int]:
    """Commands Redis ran since the last `CONFIG RESETSTAT`, by name (reads and writes
    only: connection handshakes, the subscription and the test's own left out)."""
    info = redis.command("INFO", "commandstats")
    assert isinstance(info, dict)
    calls = {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in info.items()}
    return {name: n for name, n in calls.items() if name not in _NOT_READS}


# -- configuration -------------------------------------------------------------------


def test_a_redis_url_needs_a_key_unless_plaintext_is_asked_for(redis_server: RedisServer) -> None:
    from conduit_async.stores import RedisTokenStore

    with pytest.raises(ConfigurationError, match="encrypt=False"):
        RedisTokenStore.from_url(redis_server.url)
    with pytest.raises(ConfigurationError, match="32 bytes") as caught:
        RedisTokenStore.from_url(redis_server.url, key="not-a-key-SECRET")
    assert "SECRET" not in str(caught.value)
    assert "encrypted=False" in repr(RedisTokenStore.from_url(redis_server.url, encrypt=False))


def test_the_environment_names_the_store_for_every_client(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conduit_async.stores import RedisTokenStore

    url = redis_server.url.replace("redis://", "redis://:hunter2-SECRET@")
    monkeypatch.setenv("CONDUIT_TOKEN_STORE_URL", url)
    monkeypatch.setenv("CONDUIT_TOKEN_STORE_KEY", KEY)
    client = Conduit("org", "link")
    assert isinstance(client.tokens.store, RedisTokenStore)
    assert "SECRET" not in repr(client.tokens.store) and "SECRET" not in repr(client.tokens)
    monkeypatch.delenv("CONDUIT_TOKEN_STORE_KEY")
    with pytest.raises(ConfigurationError, match="CONDUIT_TOKEN_STORE_KEY"):
        Conduit("org", "link")
    monkeypatch.setenv("CONDUIT_TOKEN_STORE_URL", "memcached://:hunter2-SECRET@host/")
    with pytest.raises(ConfigurationError, match="Redis URL") as caught:
        Conduit("org", "link")
    assert "SECRET" not in str(caught.value)


def test_a_redis_url_without_the_extra_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.setenv("CONDUIT_TOKEN_STORE_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CONDUIT_TOKEN_STORE_KEY", KEY)
    with pytest.raises(ConfigurationError, match=r'pip install "conduit-async\[redis\]"'):
        Conduit("org", "link")


async def test_an_unreachable_redis_fails_an_explicit_connect_with_a_clear_error() -> None:
    shared = store("redis://:hunter2-SECRET@127.0.0.1:1/0")
    Conduit("org", "link", token_store=shared)  # binds it, as a client of its own would
    with pytest.raises(ConfigurationError, match="cannot be reached") as caught:
        await shared.connect()
    assert "SECRET" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    await shared.aclose()


async def test_a_worker_starting_while_redis_is_down_serves_without_it(
    fake: FakeConduit, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_company("acme1")
    shared = store("redis://:hunter2-SECRET@127.0.0.1:1/0")
    async with fake.client(token_store=shared) as client:
        await client.company("acme1").integrations()
        assert shared.stats.outages == 1
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    assert "SECRET" not in caplog.text and "127.0.0.1" not in caplog.text


async def test_a_password_redis_refuses_fails_at_startup_with_a_clear_error(
    fake: FakeConduit, own_redis: RedisServer
) -> None:
    own_redis.command("CONFIG", "SET", "requirepass", "the-right-one")
    wrong = own_redis.url.replace("redis://", "redis://:WRONG-SECRET@", 1)
    client = fake.client(token_store=store(wrong))
    with pytest.raises(ConfigurationError, match="refused this client") as caught:
        async with client:
            pytest.fail("entered with a password Redis refuses")
    assert "SECRET" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    assert client.closed  # nothing left open behind the error


async def test_a_reachable_redis_is_connected_and_subscribed_at_startup_and_may_go_down_later(
    fake: FakeConduit, clock: ManualClock, own_redis: RedisServer
) -> None:
    fake.add_company("acme1")
    async with fake.client(
        clock=clock, retry=RetryPolicy(sleep=clock.sleep), token_store=store(own_redis.url)
    ) as client:
        shared = client.tokens.store
        assert shared._listening  # type: ignore[attr-defined]
        assert client.requests_sent == 0
        await shared.connect()  # type: ignore[attr-defined]  # connecting again is harmless
        own_redis.kill()  # down at runtime: never an outage
        await client.company("acme1").integrations()
        assert shared.stats.outages == 1  # type: ignore[attr-defined]


def test_one_store_serves_one_client(redis_server: RedisServer) -> None:
    shared = store(redis_server.url)
    Conduit("org", "link", token_store=shared)
    with pytest.raises(ConfigurationError, match="its own"):
        Conduit("org", "link", token_store=shared)


# -- one fetch for every worker ---------------------------------------------------------


async def test_workers_share_one_fetch_per_company_and_one_per_refresh(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer,
    clock: ManualClock,
) -> None:  # fmt: skip
    ids = [f"co{i}" for i in range(10)]
    for cid in ids:
        fake.add_company(cid)
    clients = workers(redis_server.url, 4)
    calls = [c.company(cid).integrations() for c in clients for cid in ids]
    await asyncio.gather(*calls)
    assert all(fake.stats.tokens_issued[cid] == 1 for cid in ids), fake.stats.tokens_issued
    assert sum(c.tokens.stats.company_fetches for c in clients) == len(ids)
    # Into the refresh window: one refresh per company, adopted by every worker.
    clock.advance(TTL * 0.65)
    for _ in range(3):
        await asyncio.gather(*(c.company(cid).integrations() for c in clients for cid in ids))
        await asyncio.sleep(0.05)
    await eventually(lambda: all(c.tokens.inflight == 0 for c in clients), "refreshes done")
    assert all(fake.stats.tokens_issued[cid] == 2 for cid in ids), fake.stats.tokens_issued
    assert fake.stats.expired_token_requests == 0
    assert fake.stats.count("GET /link/credentials/", 401) == 0


async def test_a_new_token_reaches_every_worker_so_revocation_costs_no_401(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer
) -> None:
    fake.add_company("acme1")
    a, b, c = workers(redis_server.url, 3)
    await asyncio.gather(*(w.company("acme1").integrations() for w in (a, b, c)))
    old = b.tokens.store.get("acme1")
    assert old is not None
    fresh = await a.companies.get("acme1")  # a new token, issued to a alone...
    fake.revoke_token(old.token)  # ...and the server revokes the old one on reissue
    new = fresh.api_token.token
    await eventually(
        lambda: all((w.tokens.store.get("acme1") or old).token == new for w in (b, c)),
        "the new token broadcast to every worker",
    )
    await asyncio.gather(*(w.company("acme1").integrations() for w in (a, b, c)))
    assert fake.stats.count("GET /link/credentials/", 401) == 0


async def test_a_read_is_one_round_trip_to_redis_even_on_a_fresh_server(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], own_redis: RedisServer
) -> None:
    fake.add_company("acme1")
    holder, reader = workers(own_redis.url, 2)
    own_redis.command("CONFIG", "RESETSTAT")
    await holder.company("acme1").integrations()
    # Read-or-lock, then store, publish and unlock: no SCRIPT EXISTS/LOAD before either.
    store = holder.tokens.store
    await eventually(lambda: store.stats.shared == 1, "the lease stored")  # type: ignore[attr-defined]
    assert commands(own_redis) == {"eval": 3, "publish": 1}
    own_redis.command("CONFIG", "RESETSTAT")
    await reader.company("acme1").integrations()  # adopted from Redis
    assert commands(own_redis) == {"eval": 1}
    assert reader.tokens.store.stats.adopted == 1  # type: ignore[attr-defined]
    assert fake.stats.tokens_issued["acme1"] == 1


async def test_leases_a_worker_published_are_served_from_its_memory_not_read_again(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer,
    clock: ManualClock,
) -> None:  # fmt: skip
    ids = [f"co{i}" for i in range(5)]
    for cid in ids:
        fake.add_company(cid)
    (client,) = workers(redis_server.url, 1)
    shared = client.tokens.store
    for cid in ids:
        await client.company(cid).integrations()  # fetched here, stored and published
    await eventually(lambda: shared.stats.shared == len(ids), "the leases stored")  # type: ignore[attr-defined]
    redis_server.command("CONFIG", "RESETSTAT")
    for _ in range(3):
        await asyncio.gather(*(client.company(cid).integrations() for cid in ids))
    assert commands(redis_server) == {}
    clock.advance(TTL * 0.65)  # into the refresh window: refreshed here, once each
    await asyncio.gather(*(client.company(cid).integrations() for cid in ids))
    await eventually(lambda: shared.stats.shared == 2 * len(ids), "the refreshes stored")  # type: ignore[attr-defined]
    redis_server.command("CONFIG", "RESETSTAT")
    for _ in range(3):
        await asyncio.gather(*(client.company(cid).integrations() for cid in ids))
    assert commands(redis_server) == {}
    assert shared.stats.adopted == 0  # type: ignore[attr-defined]


async def test_a_lease_another_worker_published_is_kept_while_there_is_room(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer
) -> None:
    for cid in ("co0", "co1", "co2"):
        fake.add_company(cid)
    (a,) = workers(redis_server.url, 1)
    (b,) = workers(redis_server.url, 1, maxsize=2)
    await asyncio.gather(a.company("co0").integrations(), b.company("co0").integrations())
    mine = b.tokens.store
    await eventually(lambda: mine._listening, "b subscribed")  # type: ignore[attr-defined]
    await a.company("co1").integrations()  # published: b has room for it
    await eventually(lambda: mine.get("co1") is not None, "co1 kept by b")
    redis_server.command("CONFIG", "RESETSTAT")
    await b.company("co1").integrations()
    assert commands(redis_server) == {}  # b's first call for co1 read nothing from Redis
    await a.company("co2").integrations()  # b is full: co2 must not evict what it uses
    await asyncio.sleep(0.2)
    assert mine.get("co2") is None and len(mine) == 2
    assert fake.stats.tokens_issued == {"co0": 1, "co1": 1, "co2": 1}


async def test_two_link_apps_on_one_redis_stay_apart(
    fake: FakeConduit, clock: ManualClock, workers: Callable[..., list[Conduit]],
    redis_server: RedisServer,
) -> None:  # fmt: skip
    async with FakeConduit(clock=clock, token_ttl=TTL) as other:
        fake.add_company("acme1")
        other.add_company("acme1")  # the same id in another Link APP: another company
        (mine,) = workers(redis_server.url, 1)
        (theirs,) = workers(redis_server.url, 1, fake_server=other)
        await mine.company("acme1").integrations()
        await theirs.company("acme1").integrations()
        assert mine.tokens.store.get("acme1") != theirs.tokens.store.get("acme1")
        assert fake.stats.tokens_issued["acme1"] == other.stats.tokens_issued["acme1"] == 1
        assert other.stats.count("GET /link/credentials/", 401) == 0
        apps = {
            key.split(b":")[2] for key in redis_server.dump() if key.startswith(b"conduit:app:")
        }
        assert len(apps) == 2


async def test_a_refusal_drops_the_shared_lease_only_if_it_still_holds_that_token(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer
) -> None:
    fake.add_company("acme1")
    a, b = workers(redis_server.url, 2)
    await a.company("acme1").integrations()
    first = a.tokens.store.get("acme1")
    assert first is not None
    second = await b.companies.get("acme1")  # b shares a newer token
    await eventually(
        lambda: leases(redis_server) == 1 and a.tokens.store.get("acme1") != first, "shared"
    )
    # a's late 401 for the first token must not drop the second one in Redis.
    await a.tokens.company_refused("acme1", first.token)
    assert leases(redis_server) == 1
    await b.tokens.company_refused("acme1", second.api_token.token)
    assert leases(redis_server) == 0
    # Racing refusals and writes: whatever the order, the newest token survives.
    await a.company("acme1").integrations()
    current = a.tokens.store.get("acme1")
    assert current is not None
    await asyncio.gather(
        *(w.tokens.company_refused("acme1", first.token) for w in (a, b) for _ in range(20)),
        b.companies.get("acme1"),
    )
    await eventually(lambda: leases(redis_server) == 1, "the newest lease kept")


async def test_a_401_retries_with_the_newer_shared_token_found_in_the_same_round_trip(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer,
    clock: ManualClock,
) -> None:  # fmt: skip
    fake.add_company("acme1")
    a, b = workers(redis_server.url, 2)
    await asyncio.gather(a.company("acme1").integrations(), b.company("acme1").integrations())
    old = a.tokens.store.get("acme1")
    assert old is not None
    # a misses b's publication (its subscription is gone), so it still holds the old token.
    deaf = a.tokens.store
    deaf._listener.cancel()  # type: ignore[attr-defined]
    await asyncio.sleep(0.01)
    clock.advance(1)
    fresh = await b.companies.get("acme1")  # a newer token, shared...
    fake.revoke_token(old.token)  # ...and the old one revoked
    stores = [w.tokens.store for w in (a, b)]
    await eventually(lambda: sum(s.stats.shared for s in stores) == 2, "b's token stored")  # type: ignore[attr-defined]
    assert a.tokens.store.get("acme1") == old
    fetches = a.tokens.stats.company_fetches
    redis_server.command("CONFIG", "RESETSTAT")
    await a.company("acme1").integrations()  # 401, then a retry with b's token
    assert fake.stats.count("GET /link/credentials/", 401) == 1
    assert a.tokens.stats.company_fetches == fetches  # nothing fetched: adopted
    assert (a.tokens.store.get("acme1") or old).token == fresh.api_token.token
    assert commands(redis_server) == {"eval": 1}  # the refusal's, nothing more to retry
    assert fake.stats.tokens_issued["acme1"] == 2


async def test_a_lock_holder_that_died_mid_fetch_costs_a_bounded_wait_not_a_failure(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer
) -> None:
    fake.add_company("acme1")
    first, second = workers(redis_server.url, 2, timeout=0.8)  # wait at most 0.2 s
    # Learn the lock's name from a real (slow) fetch.
    fake.faults.script("GET /link/company/{cid}/", [Fault.latency(0.3)])
    fetch = asyncio.create_task(first.company("acme1").integrations())
    locks: list[bytes] = []
    await eventually(
        lambda: bool(locks.extend(k for k in redis_server.dump() if b":lock:" in k) or locks),
        "the lock taken",
    )
    await fetch
    # Now a holder takes it and dies: the lock stays until its lease ends (10 s here).
    redis_server.command("FLUSHALL")
    redis_server.command("SET", locks[0].decode(), "dead-holder", "PX", "10000")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await second.company("acme1").integrations()
    assert loop.time() - started < 5  # a quarter of the request timeout, not the lock's lease
    shared = second.tokens.store
    assert shared.stats.waits == 1 and shared.stats.wait_timeouts == 1  # type: ignore[attr-defined]
    assert fake.stats.tokens_issued["acme1"] == 2


async def test_the_fetching_worker_does_not_wait_for_redis_to_store_its_token(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], own_redis: RedisServer
) -> None:
    fake.add_company("acme1")
    holder, waiter = workers(own_redis.url, 2)
    fake.faults.script("GET /link/company/{cid}/", [Fault.latency(0.3)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    fetching = asyncio.create_task(holder.company("acme1").integrations())
    await eventually(lambda: any(b":lock:" in k for k in own_redis.dump()), "the lock taken")
    waiting = asyncio.create_task(waiter.company("acme1").integrations())
    await eventually(lambda: waiter.tokens.store.stats.waits == 1, "the other worker waits")  # type: ignore[attr-defined]
    # Redis is slow to write from now on (1.5 s): the holder's caller must not notice.
    own_redis.command("CLIENT", "PAUSE", "1500", "WRITE")
    await fetching
    assert loop.time() - started < 1.2  # the fetch (0.3 s), not the fetch and the write (1.5 s)
    await waiting  # the other worker still gets the token once Redis writes it
    assert loop.time() - started > 1.0
    assert fake.stats.tokens_issued["acme1"] == 1
    # The waiter may read the publication before the holder reads its own write's reply.
    await eventually(
        lambda: holder.tokens.store.stats.shared == 1,  # type: ignore[attr-defined]
        "the holder counts its write",
    )


# -- Redis down is not an outage ----------------------------------------------------------


async def test_redis_killed_and_restarted_mid_run_fails_no_call(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], own_redis: RedisServer,
    clock: ManualClock, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    ids = [f"co{i}" for i in range(5)]
    for cid in ids:
        fake.add_company(cid)
    clients = workers(own_redis.url, 2)

    async def round_() -> None:
        await asyncio.gather(*(c.company(cid).integrations() for c in clients for cid in ids))
        clock.advance(60)
        await asyncio.sleep(0.02)

    await round_()
    own_redis.kill()
    caplog.set_level(logging.INFO, "conduit_async.stores")
    for _ in range(12):  # two token lifetimes without Redis
        await round_()
    stores = [c.tokens.store for c in clients]
    assert all(s.stats.outages == 1 for s in stores), [s.stats for s in stores]  # type: ignore[attr-defined]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(clients)  # one per outage per worker
    own_redis.start()
    shared_before = sum(s.stats.shared for s in stores)  # type: ignore[attr-defined]
    for _ in range(20):
        await round_()
        if sum(s.stats.shared for s in stores) > shared_before:  # type: ignore[attr-defined]
            break
    assert sum(s.stats.shared for s in stores) > shared_before  # type: ignore[attr-defined]
    await eventually(lambda: all(s._listening for s in stores), "subscriptions back")  # type: ignore[attr-defined]
    assert fake.stats.expired_token_requests == 0
    assert "is back" in caplog.text


async def test_redis_killed_mid_run_leaves_no_task_exception_unretrieved(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], own_redis: RedisServer,
    clock: ManualClock, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    ids = [f"co{i}" for i in range(20)]
    for cid in ids:
        fake.add_company(cid)
        fake.add_workspace(f"W{cid}", ext_id=f"crm-{cid}")
    clients = workers(own_redis.url, 3)
    caplog.set_level(logging.DEBUG)

    async def busy() -> None:
        # Reads, locks, background writes (a new token each `get`), workspace listings.
        await asyncio.gather(
            *(c.company(cid).integrations() for c in clients for cid in ids),
            *(c.companies.get(cid) for c in clients for cid in ids[:5]),
            *(c.workspace(ext_id=f"crm-{cid}").get() for c in clients for cid in ids[:3]),
            return_exceptions=True,
        )

    await busy()
    loop = asyncio.get_running_loop()
    loop.call_later(0.002, own_redis.freeze)  # mid-round: operations time out while under way
    for _ in range(3):
        clock.advance(200)
        await busy()
        await asyncio.sleep(0.03)
    own_redis.thaw()
    loop.call_later(0.002, own_redis.kill)  # mid-round: operations fail while under way
    for _ in range(3):
        clock.advance(200)
        await busy()
        await asyncio.sleep(0.03)
    own_redis.start()
    clock.advance(200)
    await busy()
    for client in clients:
        await client.close()  # cancels whatever is still under way
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0)
    unretrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert unretrieved == [], [r.getMessage() for r in unretrieved]
    assert fake.stats.expired_token_requests == 0


async def test_a_failed_background_write_is_logged_once_and_never_left_unretrieved(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    fake.add_company("acme1")
    (client,) = workers(redis_server.url, 1)
    shared = client.tokens.store
    await client.company("acme1").integrations()

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("not Redis's fault")

    shared._write_leases = broken  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG)
    await client.companies.get("acme1")  # a new token: written in the background, fails
    await eventually(lambda: shared._writer.done(), "the write tried")  # type: ignore[attr-defined]
    await client.companies.get("acme1")  # the next write starts a new writer
    await asyncio.sleep(0.05)
    gc.collect()
    await asyncio.sleep(0)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "never retrieved" in m], messages
    failed = [m for m in messages if "background task failed (RuntimeError)" in m]
    assert len(failed) == 2, messages  # one per failed write, each logged once
    assert "not Redis's fault" not in caplog.text  # the type only, never the message


async def test_an_unreadable_publication_does_not_end_the_subscription(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    fake.add_company("acme1")
    a, b = workers(redis_server.url, 2, key=None, encrypt=False)
    await asyncio.gather(a.company("acme1").integrations(), b.company("acme1").integrations())
    subscribed = b.tokens.store
    await eventually(lambda: subscribed._listening, "b subscribed")  # type: ignore[attr-defined]
    channel = subscribed._app.events  # type: ignore[attr-defined]
    sender = b"0" * 16
    for junk in (b"Lpnot json", b"Lp[1, 2]", b'Lp["acme1"]', b"L", b"Pxx"):
        redis_server.command("PUBLISH", channel, junk[:1] + sender + junk[1:])
    fresh = await a.companies.get("acme1")
    await eventually(
        lambda: (subscribed.get("acme1") or fresh).token == fresh.api_token.token,
        "a's new token still reaches b",
    )
    assert subscribed.stats.received >= 1  # type: ignore[attr-defined]
    assert "never retrieved" not in caplog.text


async def test_a_redis_that_stops_answering_costs_timeouts_for_3_s_then_nothing(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], own_redis: RedisServer
) -> None:
    from conduit_async.stores._breaker import Breaker

    for i in range(4):
        fake.add_company(f"co{i}")
    (client,) = workers(own_redis.url, 1, op_timeout=0.1)
    shared = client.tokens.store
    now = [100.0]
    breaker = shared._breaker = Breaker(now=lambda: now[0])  # type: ignore[attr-defined]
    stats = shared.stats  # type: ignore[attr-defined]
    await client.company("co0").integrations()
    own_redis.freeze()
    try:
        await client.company("co1").integrations()  # a timeout: perhaps only a blip
        assert stats.timeouts >= 1 and stats.outages == 0 and breaker.allows()
        now[0] += 3.0
        await client.company("co2").integrations()  # 3 s and no answer: open
        assert stats.outages == 1 and not breaker.allows()
        errors = stats.errors
        await client.company("co3").integrations()
        assert stats.errors == errors  # Redis skipped: no operation tried, no timeout waited
    finally:
        own_redis.thaw()
    assert fake.stats.count("GET /link/credentials/", 401) == 0


async def test_a_redis_that_was_never_there_costs_nothing(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_company("acme1")
    (client,) = workers("redis://127.0.0.1:1/0", 1)
    for _ in range(20):
        await client.company("acme1").integrations()
    assert fake.stats.tokens_issued["acme1"] == 1
    assert client.tokens.store.stats.outages == 1  # type: ignore[attr-defined]


async def test_the_subscription_reconnects_by_itself(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer
) -> None:
    fake.add_company("acme1")
    a, b = workers(redis_server.url, 2)
    await asyncio.gather(a.company("acme1").integrations(), b.company("acme1").integrations())
    await eventually(lambda: b.tokens.store._listening, "b subscribed")  # type: ignore[attr-defined]
    redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
    await asyncio.sleep(0.1)
    await eventually(lambda: b.tokens.store._listening, "b subscribed again")  # type: ignore[attr-defined]
    fresh = await a.companies.get("acme1")
    await eventually(
        lambda: (b.tokens.store.get("acme1") or fresh).token == fresh.api_token.token,
        "a's new token reaches b after the reconnect",
    )


# -- shared pause and workspaces --------------------------------------------------------


async def test_a_429_pauses_every_worker_of_the_same_app(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer
) -> None:
    fake.add_company("acme1")
    a, b = workers(redis_server.url, 2)
    await asyncio.gather(a.company("acme1").integrations(), b.company("acme1").integrations())
    await eventually(lambda: b.tokens.store._listening, "b subscribed")  # type: ignore[attr-defined]
    sent = b.requests_sent
    fake.faults.script("GET /link/credentials/", [Fault.status(429, retry_after=30)])
    task = asyncio.create_task(a.company("acme1").integrations())
    await eventually(lambda: b.paused_for > 20, "a's pause reaches b")
    assert b.requests_sent == sent  # b paused without sending anything
    assert b.tokens.store.stats.pauses_received == 1  # type: ignore[attr-defined]
    await task


async def test_one_workspace_listing_serves_every_worker(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer
) -> None:
    for i in range(5):
        fake.add_workspace(f"W{i}", ext_id=f"crm{i}")
    clients = workers(redis_server.url, 4)
    await asyncio.gather(
        *(c.workspace(ext_id=f"crm{i}").dashboards.list() for c in clients for i in range(5))
    )
    assert fake.stats.count("GET /v2/workspaces/") == 1
    # A workspace the shared listing lacks is listed again: once, for every worker.
    ws = fake.add_workspace("W9", ext_id="crm9")
    await asyncio.gather(*(c.workspace(ws.id).get() for c in clients))
    assert fake.stats.count("GET /v2/workspaces/") == 2


# -- secrets ---------------------------------------------------------------------------


async def test_nothing_in_redis_holds_a_token_or_a_company_id_in_clear(
    fake: FakeConduit, workers: Callable[..., list[Conduit]], redis_server: RedisServer
) -> None:
    for i in range(3):
        fake.add_company(f"secretco{i}")
        fake.add_workspace(f"W{i}", ext_id=f"crm{i}")
    clients = workers(redis_server.url, 2)
    seen: set[str] = set()
    for c in clients:
        for i in range(3):
            await c.company(f"secretco{i}").integrations()
            await c.workspace(ext_id=f"crm{i}").dashboards.list()
        seen |= issued(fake)
        company = await c.companies.get("secretco0")
        seen.add(company.api_token.token)
    await asyncio.sleep(0.1)
    stored = redis_server.dump()
    assert any(b":lease:" in k for k in stored) and any(k.endswith(b":workspaces") for k in stored)
    blob = b"\n".join([*stored, *stored.values()])
    for secret in (*seen, fake.link_token, fake.org_token, "secretco", "crm0"):
        assert secret.encode() not in blob, secret
