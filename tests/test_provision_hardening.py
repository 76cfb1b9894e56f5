"""Leaving a `provision()` generator early, however it is left: the documented
`contextlib.aclosing`, a generator simply dropped, or one still pending when the
event loop ends. Each must stop the workers (no row is applied afterwards) and
leave no task behind ('Task was destroyed but it is pending' is a failure)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

import pytest
from test_provision import clock, conduit, connect, fake, other_tasks

from conduit_async import CompanySpec, Conduit, WorkspaceSpec
from conduit_async.testing import FakeConduit, ManualClock

__all__ = ["clock", "conduit", "fake"]  # fixtures shared with test_provision

CONCURRENCY = 8


async def settle(fake: FakeConduit) -> int:
    """Let anything still running run (on a real loop, over loopback); the companies made."""
    for _ in range(20):
        await asyncio.sleep(0.01)
    return len(fake.stats.companies_created)


async def test_aclosing_stops_the_workers_at_once(fake: FakeConduit, conduit: Conduit) -> None:
    rows = (CompanySpec(f"acl{n}") for n in range(10_000))
    seen = 0
    async with contextlib.aclosing(
        conduit.companies.provision(rows, concurrency=CONCURRENCY)
    ) as results:
        async for _ in results:
            seen += 1
            if seen == 5:
                break
    # The in-flight rows have been waited for: nothing of ours runs any more...
    assert not other_tasks()
    made = len(fake.stats.companies_created)
    # ...at most the rows that were in flight were applied without being reported...
    assert seen <= made <= seen + CONCURRENCY
    # ...and nothing is applied later.
    assert await settle(fake) == made


async def test_aclosing_stops_workspace_workers_too(fake: FakeConduit, conduit: Conduit) -> None:
    rows = (WorkspaceSpec(f"W {n}", f"aclws{n}") for n in range(1000))
    async with contextlib.aclosing(
        conduit.workspaces.provision(rows, clone_dashboards=[1], concurrency=4)
    ) as results:
        await anext(results)
    assert not other_tasks()
    made = fake.stats.workspaces_created
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert fake.stats.workspaces_created == made <= 1 + 4


async def test_a_dropped_generator_stops_its_workers(fake: FakeConduit, conduit: Conduit) -> None:
    results: Any = conduit.companies.provision(
        (CompanySpec(f"drop{n}") for n in range(10_000)), concurrency=CONCURRENCY
    )
    for _ in range(5):
        await anext(results)
    del results  # never iterated to the end, never closed: the loop finalizes it
    gc.collect()
    for _ in range(100):
        if not other_tasks():
            break
        await asyncio.sleep(0.01)
    assert not other_tasks()
    made = len(fake.stats.companies_created)
    assert made <= 5 + CONCURRENCY
    assert await settle(fake) == made


async def test_a_generator_never_started_costs_nothing(fake: FakeConduit, conduit: Conduit) -> None:
    results: Any = conduit.companies.provision(CompanySpec(f"never{n}") for n in range(10))
    workspaces: Any = conduit.workspaces.provision([WorkspaceSpec("N", "never")])
    del results, workspaces
    gc.collect()
    await asyncio.sleep(0)
    assert not other_tasks()
    assert fake.stats.companies_created == {} and fake.stats.workspaces_created == 0


def test_a_generator_pending_when_the_loop_ends_leaves_no_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A program that returns from `main` with the generator still referenced (here by a
    reference cycle, so only the garbage collector frees it, after the loop is gone)."""

    async def main() -> None:
        clock = ManualClock()
        async with FakeConduit(clock=clock, port=0) as server, connect(server, clock) as client:
            holder: dict[str, Any] = {}
            holder["self"] = holder
            holder["results"] = client.companies.provision(
                (CompanySpec(f"end{n}") for n in range(10_000)), concurrency=CONCURRENCY
            )
            for _ in range(3):
                await anext(holder["results"])

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        gc.collect()
    assert "destroyed" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
