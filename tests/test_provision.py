"""Bulk provisioning against the fake server, in-process, over loopback.

What a user of `conduit.companies.provision` / `conduit.workspaces.provision`
relies on: ensure semantics, bad rows reported rather than raised, memory
bounded by the concurrency, a 429 that slows every worker, lost responses
that never create twice, tokens kept from the creates, and a generator that
cleans up after itself however it is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from conduit_async import (
    CompanySpec,
    Conduit,
    ConfigurationError,
    ProvisionResult,
    RetryPolicy,
    ServerError,
    ValidationError,
    WorkspaceResult,
    WorkspaceSpec,
)
from conduit_async.testing import FakeConduit, Fault, ManualClock

CREATE = "POST /link/company/"
GET = "GET /link/company/{cid}/"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeConduit]:
    async with FakeConduit(clock=clock, token_ttl=600, seed=0, port=0) as server:
        yield server


def connect(fake: FakeConduit, clock: ManualClock, **options: Any) -> Conduit:
    options.setdefault("max_connections", 64)
    return fake.client(
        clock=clock,
        retry=RetryPolicy(sleep=clock.sleep),
        seed=0,
        **options,
    )


@pytest.fixture
async def conduit(fake: FakeConduit, clock: ManualClock) -> AsyncIterator[Conduit]:
    async with connect(fake, clock) as client:
        yield client


async def collect(results: AsyncIterator[Any]) -> dict[str, Any]:
    """Every result, by row key (the company id as given, or the ext_id)."""
    out: dict[str, Any] = {}
    async for result in results:
        key = result.id if isinstance(result, ProvisionResult) else result.ext_id
        assert key not in out, f"two results for {key}"
        out[key] = result
    return out


def other_tasks() -> set[asyncio.Task[Any]]:
    """The SDK's tasks still alive (provisioning workers, token fetches); the fake
    server's own request handlers are not ours to judge."""
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("conduit-")}


# -- companies: ensure semantics -------------------------------------------------------


async def test_ensure_creates_updates_or_leaves_unchanged(
    fake: FakeConduit, conduit: Conduit
) -> None:
    fake.add_company("same1", name="Same", page_enabled=True)
    fake.add_company("renamed1", name="Old name")
    fake.add_company("paged1", name="Paged", page_enabled=True)
    rows = [
        CompanySpec("new1", name="New", page_enabled=False),
        CompanySpec("same1", name="Same", page_enabled=True),
        CompanySpec("renamed1", name="New name"),
        CompanySpec("paged1", page_enabled=False),
    ]
    results = await collect(conduit.companies.provision(rows))
    # Ids ignore case; nothing managed, nothing to change. (In a batch of its own: within
    # one batch, a second row for the same company is refused as a duplicate.)
    results.update(await collect(conduit.companies.provision([CompanySpec("SAME1")])))

    assert {key: r.outcome for key, r in results.items()} == {
        "new1": "created",
        "same1": "unchanged",
        "SAME1": "unchanged",
        "renamed1": "updated",
        "paged1": "updated",
    }
    assert all(r.ok and r.error is None and r.attempts == 1 for r in results.values())
    assert results["new1"].company.name == "New"
    # The results' JSON form leaves the company token out.
    token = results["new1"].company.api_token.token
    assert token and token not in json.dumps([r.to_dict() for r in results.values()])
    assert results["new1"].company.link_page.enabled is False
    assert results["renamed1"].company.name == "New name"
    assert fake.companies["renamed1"].name == "New name"
    assert fake.companies["paged1"].page_enabled is False
    assert fake.companies["paged1"].name == "Paged"  # not managed by the row: kept
    assert fake.stats.companies_created == {"new1": 1}
    assert fake.stats.count("POST /link/company/{cid}/") == 2  # only the two that differed


async def test_invalid_rows_become_failed_results_and_the_batch_goes_on(
    fake: FakeConduit, conduit: Conduit
) -> None:
    rows: list[Any] = [
        CompanySpec("ok1", name="Fine"),
        CompanySpec("not-valid"),
        CompanySpec("", name="No id"),
        CompanySpec("longname", name="x" * 1025),
        {"id": "flag1", "page_enabled": "yes"},  # the library wants a real bool
        {"id": "typo1", "nmae": "Typo"},
        {"name": "No id at all"},
        42,
        {"id": "ok2"},
    ]
    everything = [r async for r in conduit.companies.provision(rows)]
    results = {r.id: r for r in everything}

    assert results["ok1"].outcome == results["ok2"].outcome == "created"
    failed = [r for r in everything if not r.ok]
    assert len(failed) == 7
    for result in failed:
        assert result.outcome == "failed"
        assert isinstance(result.error, ValidationError)
        assert result.attempts == 0  # refused before anything was sent
        assert result.company is None
    arguments = {
        key: r.error.argument for key, r in results.items() if isinstance(r.error, ValidationError)
    }
    assert arguments["not-valid"] == "id"
    assert arguments["longname"] == "name"
    assert arguments["flag1"] == "page_enabled"
    assert arguments["typo1"] == "nmae"
    assert fake.stats.count(CREATE) == 2


async def test_rows_from_sync_and_async_iterables_and_dicts(
    fake: FakeConduit, conduit: Conduit
) -> None:
    def generator() -> Iterator[CompanySpec]:
        for n in range(20):
            yield CompanySpec(f"gen{n}", name=f"Gen {n}")

    async def async_generator() -> AsyncIterator[dict[str, object]]:
        for n in range(20):
            await asyncio.sleep(0)
            yield {"id": f"agen{n}", "name": f"Async {n}", "page_enabled": n % 2 == 0}

    class AsyncRows:
        """An async iterable that is not an async generator."""

        def __init__(self) -> None:
            self.left = [CompanySpec(f"aiter{n}") for n in range(10)]

        def __aiter__(self) -> AsyncRows:
            return self

        async def __anext__(self) -> CompanySpec:
            if not self.left:
                raise StopAsyncIteration
            return self.left.pop()

    sources: list[Any] = [
        generator(),
        async_generator(),
        AsyncRows(),
        [{"id": f"dict{n}"} for n in range(10)],
        tuple(CompanySpec(f"tuple{n}") for n in range(5)),
    ]
    for source in sources:
        results = await collect(conduit.companies.provision(source, concurrency=4))
        assert results and all(r.outcome == "created" for r in results.values())
    assert len(fake.companies) == 65
    assert fake.companies["agen3"].page_enabled is False
    assert fake.companies["agen4"].name == "Async 4"


async def test_line_numbers_are_carried_into_results(conduit: Conduit) -> None:
    rows = [CompanySpec("line1", line=7), CompanySpec("bad id", line=9)]
    results = await collect(conduit.companies.provision(rows))
    assert results["line1"].line == 7
    assert results["bad id"].line == 9
    assert results["bad id"].outcome == "failed"


# -- streaming and cleanup ---------------------------------------------------------------


async def test_memory_is_bounded_by_the_concurrency(conduit: Conduit) -> None:
    pulled = 0

    def rows() -> Iterator[dict[str, str]]:
        nonlocal pulled
        for n in range(200_000):
            pulled += 1
            yield {"id": f"bulk{n}"}

    seen = 0
    most_in_flight = 0
    results = conduit.companies.provision(rows(), concurrency=64)
    async for result in results:
        assert result.outcome == "created"
        seen += 1
        most_in_flight = max(most_in_flight, pulled - seen)
        if seen == 4000:
            break
    await results.aclose()

    assert most_in_flight <= 64
    assert most_in_flight >= 32  # the pool really ran wide
    assert pulled <= seen + 64  # the input was not drained ahead
    assert not other_tasks()


async def test_early_break_cancels_the_workers(conduit: Conduit) -> None:
    rows = ({"id": f"brk{n}"} for n in range(10_000))
    async for _ in conduit.companies.provision(rows, concurrency=16):
        break
    # No aclose(): the loop finalizes the abandoned generator, which cancels its workers.
    for _ in range(100):
        if not other_tasks():
            break
        await asyncio.sleep(0.01)
    assert not other_tasks()


async def test_aclose_and_cancellation_leave_nothing_pending(conduit: Conduit) -> None:
    results = conduit.companies.provision({"id": f"cls{n}"} for n in range(10_000))
    async with contextlib.aclosing(results):
        await anext(results)
    assert not other_tasks()

    started = asyncio.Event()

    async def consume() -> None:
        async for _ in conduit.companies.provision({"id": f"can{n}"} for n in range(10_000)):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not other_tasks()


async def test_a_failing_row_source_stops_the_batch_cleanly(conduit: Conduit) -> None:
    def rows() -> Iterator[CompanySpec]:
        yield from (CompanySpec(f"src{n}") for n in range(5))
        raise RuntimeError("the input file went away")

    seen = []
    with pytest.raises(RuntimeError, match="went away"):
        async for result in conduit.companies.provision(rows(), concurrency=2):
            seen.append(result)
    assert len(seen) <= 5
    assert not other_tasks()


async def test_a_missing_token_stops_the_batch_instead_of_failing_every_row(
    fake: FakeConduit, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONDUIT_LINK_TOKEN", raising=False)
    async with Conduit(fake.org_token, "", link_base_url=fake.link_base_url, clock=clock) as client:
        with pytest.raises(ConfigurationError, match="CONDUIT_LINK_TOKEN"):
            async for _ in client.companies.provision({"id": f"t{n}"} for n in range(1000)):
                pass
    assert not other_tasks()


async def test_arguments_are_checked_at_call_time(
    conduit: Conduit, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValidationError, match="concurrency"):
        conduit.companies.provision([], concurrency=0)
    with pytest.raises(ValidationError, match="retries"):
        conduit.companies.provision([], retries=-1)
    with pytest.raises(ValidationError, match="clone_dashboards"):
        conduit.workspaces.provision([], clone_dashboards=[0])
    with caplog.at_level(logging.WARNING, logger="conduit_async.provision"):
        results = conduit.companies.provision([], concurrency=65)
    assert "max_connections" in caplog.text
    assert [r async for r in results] == []


# -- failures, retries, rate limits --------------------------------------------------------


async def test_transient_failures_get_bounded_row_level_retries(
    fake: FakeConduit, conduit: Conduit
) -> None:
    # The session tries 3 times; the row is then tried again (attempt 2) and succeeds.
    fake.faults.script(CREATE, [Fault.status(503)] * 3)
    results = await collect(conduit.companies.provision([CompanySpec("flaky1")], concurrency=1))
    assert results["flaky1"].outcome == "created"
    assert results["flaky1"].attempts == 2

    # Failing for good: 1 + 2 row-level tries of 3 requests each, then a typed failure.
    fake.faults.script(CREATE, [Fault.status(502)] * 9)
    rows = [CompanySpec("down1"), CompanySpec("fine1")]
    results = await collect(conduit.companies.provision(rows, concurrency=1))
    assert results["down1"].outcome == "failed"
    assert isinstance(results["down1"].error, ServerError)
    assert results["down1"].attempts == 3
    assert results["fine1"].outcome == "created"


async def test_lost_responses_never_create_a_company_twice(
    fake: FakeConduit, conduit: Conduit
) -> None:
    fake.faults.random(
        CREATE,
        rate=0.3,
        kinds=[Fault.lost(), Fault.reset(), Fault.status(503)],
        weights=[3, 1, 1],
    )
    ids = [f"lost{n}" for n in range(300)]
    results = await collect(conduit.companies.provision({"id": cid} for cid in ids))

    assert fake.stats.faults_injected.get("lost", 0) > 20
    assert all(r.ok for r in results.values()), [r.error for r in results.values() if not r.ok]
    assert {r.outcome for r in results.values()} == {"created"}
    assert fake.stats.companies_created == {cid: 1 for cid in ids}


async def test_a_429_pauses_every_worker_then_the_batch_recovers(fake: FakeConduit) -> None:
    """Real time here: the point is when requests leave, relative to the shared pause."""
    starts: list[tuple[float, float]] = []
    client: Conduit | None = None

    async def on_start(*_: object) -> None:
        assert client is not None
        starts.append((time.monotonic(), client.paused_for))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    pause = 0.4
    fake.faults.script(CREATE, [None] * 40 + [Fault.status(429, retry_after=pause)])
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), trace_configs=[trace]
    ) as http:
        client = Conduit(
            fake.org_token,
            fake.link_token,
            base_url=fake.base_url,
            link_base_url=fake.link_base_url,
            session=http,
        )
        async with client:
            assert client.max_connections == 64
            began = time.monotonic()
            rows = ({"id": f"rate{n}"} for n in range(400))
            results = await collect(client.companies.provision(rows, concurrency=64))
            elapsed = time.monotonic() - began

    assert all(r.outcome == "created" for r in results.values())
    assert fake.stats.count(CREATE, 429) == 1
    # No request left while the pause was on (a little slack for timer granularity)...
    assert max(paused for _, paused in starts) < 0.05
    # ...and there really was a pause: a gap of about Retry-After between two requests.
    times = sorted(at for at, _ in starts)
    gap = max(b - a for a, b in itertools.pairwise(times))
    assert pause * 0.9 <= gap < pause + 0.5
    # After it, the batch went back to full speed: the rest took far less than the pause.
    assert elapsed < gap + 3.0


# -- tokens ----------------------------------------------------------------------------------


async def test_company_tokens_from_the_batch_are_reused(
    fake: FakeConduit, conduit: Conduit
) -> None:
    ids = [f"tok{n}" for n in range(100)]
    results = await collect(conduit.companies.provision(CompanySpec(cid) for cid in ids))
    assert all(r.outcome == "created" for r in results.values())

    await asyncio.gather(*(conduit.company(cid).integrations() for cid in ids))

    assert fake.stats.count(GET) == 0
    assert conduit.tokens.stats.company_fetches == 0
    assert fake.stats.tokens_issued == {cid: 1 for cid in ids}
    assert fake.stats.expired_token_requests == 0


# -- workspaces --------------------------------------------------------------------------------


async def test_workspaces_are_created_once_with_clones_and_share_urls(
    fake: FakeConduit, conduit: Conduit
) -> None:
    old = fake.add_workspace("Old", ext_id="old1")
    rows: list[Any] = [
        WorkspaceSpec("Alpha", "alpha"),
        {"name": "Beta", "ext_id": "beta"},
        WorkspaceSpec("Old renamed", "old1"),
        {"name": "No ext id"},
    ]
    results = await collect(conduit.workspaces.provision(rows, clone_dashboards=[1, 2]))

    alpha: WorkspaceResult = results["alpha"]
    assert alpha.outcome == "created"
    assert alpha.workspace is not None and alpha.workspace.ext_id == "alpha"
    assert [c.name for c in alpha.clones] == ["Sales Dashboard", "Marketing Overview"]
    assert set(alpha.share_urls) == {1, 2}
    view = conduit.workspace(alpha.workspace.id)
    assert alpha.share_urls[1] == await view.dashboards.share_url(alpha.clones[0].id)
    assert results["beta"].outcome == "created"
    # An existing workspace is not created again; it gets the copies it lacked.
    assert results["old1"].outcome == "updated"
    assert results["old1"].workspace.id == old.id
    assert len(results["old1"].clones) == 2
    assert results[""].outcome == "failed"
    assert isinstance(results[""].error, ValidationError)
    assert fake.stats.count("GET /v2/workspaces/") == 1  # listed once for the batch
    assert fake.stats.workspaces_created_by_ext_id == {"alpha": 1, "beta": 1}
    assert fake.stats.dashboards_cloned == 6

    # A rerun changes nothing and reports the same share URLs.
    again = await collect(conduit.workspaces.provision(rows[:3], clone_dashboards=[1, 2]))
    assert {r.outcome for r in again.values()} == {"unchanged"}
    assert again["alpha"].share_urls == alpha.share_urls
    assert again["alpha"].clones == ()
    assert fake.stats.dashboards_cloned == 6
    assert fake.stats.workspaces_created == 2


async def test_rows_with_the_same_ext_id_make_one_workspace(
    fake: FakeConduit, conduit: Conduit
) -> None:
    # The first row wins, whatever the timing; the others are refused, never applied.
    rows = [WorkspaceSpec(f"Twin {n}", "twin") for n in range(5)]
    results = [r async for r in conduit.workspaces.provision(rows, clone_dashboards=[3])]
    assert sorted(r.outcome for r in results) == ["created"] + ["failed"] * 4
    first = next(r for r in results if r.ok)
    assert first.name == "Twin 0" and set(first.share_urls) == {3}
    for result in results:
        if not result.ok:
            assert str(result.error) == "ext_id: duplicate of row 1"
            assert result.attempts == 0 and result.name.startswith("Twin ")
    assert fake.stats.workspaces_created_by_ext_id == {"twin": 1}
    assert fake.stats.dashboards_cloned == 1


async def test_a_lost_clone_is_found_rather_than_repeated(
    fake: FakeConduit, conduit: Conduit
) -> None:
    fake.faults.script("POST /v2/dashboards/{dashboard_id}/clone/", [Fault.lost()])
    results = await collect(
        conduit.workspaces.provision([WorkspaceSpec("Gamma", "gamma")], clone_dashboards=[1])
    )
    gamma = results["gamma"]
    assert gamma.outcome == "created", gamma.error
    assert gamma.attempts == 2
    assert fake.stats.dashboards_cloned == 1
    assert set(gamma.share_urls) == {1}


async def test_an_unknown_template_dashboard_is_refused_before_any_row(
    fake: FakeConduit, conduit: Conduit
) -> None:
    with pytest.raises(ValidationError, match="no dashboard 99"):
        async for _ in conduit.workspaces.provision(
            [WorkspaceSpec("Delta", "delta")], clone_dashboards=[1, 99]
        ):
            pass
    assert fake.stats.workspaces_created == 0


def test_results_as_json_carry_no_token() -> None:
    from conduit_async.provision._types import WorkspaceResult as WR

    token = "wt_secret_workspace_token"
    ws = SimpleNamespace(id=1, name="A", ext_id="a", token=token)
    data = WR("a", "A", "created", workspace=ws).to_dict()  # type: ignore[arg-type]
    assert token not in str(data)
    assert data["workspace"] == {"id": 1, "name": "A", "ext_id": "a"}
