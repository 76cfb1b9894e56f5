"""`conduit-async demo`: the product's main job, end to end, with no account and no set-up.

An embedded fake Conduit runs in this process on a free loopback port. The
client and the server share one clock: real time plus an offset, so that
"ten minutes later" (every company token expired) is one jump rather than a
wait. The demo provisions companies and workspaces concurrently, then calls
company-scoped endpoints before and after the jump, and shows from the
server's own counters that tokens were fetched only when needed and that no
expired token was ever sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING

from ..client import Conduit
from ..provision import CompanySpec, ProvisionResult, WorkspaceResult, WorkspaceSpec
from ..provision._types import OUTCOMES
from ._config import UsageError
from ._progress import Progress, Tally, make_progress

if TYPE_CHECKING:
    from ..testing import FakeConduit

__all__ = ["ShiftedClock", "demo_command"]

#: How far the demo jumps the shared clock: past the 10-minute company token lifetime.
JUMP = 11 * 60.0
SAMPLE = 50
INTEGRATION = 1  # the fake server's "Google Ads"
TEMPLATE = 1  # the fake server's seeded "Sales Dashboard"


class ShiftedClock:
    """Real time plus an offset that only grows: what the fake server and the client share."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def _drain(
    results: AsyncGenerator[ProvisionResult, None] | AsyncGenerator[WorkspaceResult, None],
    into: list[ProvisionResult | WorkspaceResult],
    tally: Tally,
    progress: Progress,
) -> None:
    async with contextlib.aclosing(results):
        async for result in results:
            tally.add(result)
            progress.advance(tally)
            into.append(result)


async def _company_calls(conduit: Conduit, ids: list[str]) -> None:
    """What a web app does per tenant: list its integrations, make a connect link."""

    async def one(cid: str) -> None:
        view = conduit.company(cid)
        await asyncio.gather(view.integrations(), view.connect_url(INTEGRATION))

    await asyncio.gather(*(one(cid) for cid in ids))


async def demo_command(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0 if every row succeeded and no expired token was sent."""
    from ..testing import FakeConduit  # aiohttp.web is only needed here

    if args.companies < 0 or args.workspaces < 0 or args.concurrency < 1:
        raise UsageError("--companies and --workspaces must be >= 0, --concurrency >= 1")
    clock = ShiftedClock()
    async with FakeConduit(clock=clock, seed=0, port=0) as fake:
        print(f"Embedded fake Conduit server at {fake.url} (no account, no configuration)")
        async with Conduit(
            fake.org_token,
            fake.link_token,
            base_url=fake.base_url,
            link_base_url=fake.link_base_url,
            clock=clock,
            max_connections=args.concurrency,
            # Room for every company's token: the demo calls a sample of them afterwards.
            token_cache_size=max(10_000, args.companies),
            seed=0,
        ) as conduit:
            return await _run(args, conduit, fake, clock)


def _companies(count: int) -> Iterator[CompanySpec]:
    for n in range(1, count + 1):
        yield CompanySpec(f"demo{n:06d}", name=f"Demo Company {n}", page_enabled=n % 2 == 0)


def _workspaces(count: int) -> Iterator[WorkspaceSpec]:
    for n in range(1, count + 1):
        yield WorkspaceSpec(f"Demo Workspace {n}", f"demo-ws-{n:03d}")


async def _run(
    args: argparse.Namespace, conduit: Conduit, fake: FakeConduit, clock: ShiftedClock
) -> int:
    tally = Tally()
    progress = make_progress(args.companies + args.workspaces, "demo", quiet=args.quiet)
    results: list[ProvisionResult | WorkspaceResult] = []
    try:
        await asyncio.gather(
            _drain(
                conduit.companies.provision(
                    _companies(args.companies), concurrency=args.concurrency
                ),
                results,
                tally,
                progress,
            ),
            _drain(
                conduit.workspaces.provision(
                    _workspaces(args.workspaces),
                    clone_dashboards=[TEMPLATE] if args.workspaces else [],
                    concurrency=min(args.concurrency, 16),
                ),
                results,
                tally,
                progress,
            ),
        )
    finally:
        tally.finish()
        progress.close()
    companies = [r for r in results if isinstance(r, ProvisionResult)]
    workspaces = [r for r in results if isinstance(r, WorkspaceResult)]
    print()
    print(
        f"Provisioned {tally.done:,} rows concurrently in {tally.elapsed:.2f} s "
        f"({tally.rate:,.0f} rows/s):"
    )
    for what, batch in (("companies", companies), ("workspaces", workspaces)):
        counts = ", ".join(f"{sum(r.outcome == o for r in batch):,} {o}" for o in OUTCOMES)
        print(f"  {what:<11} {counts}")
    for line, key, reason in tally.failures:
        print(f"  failed: {key or line}: {reason}")
    shared = sorted((r for r in workspaces if r.ok and r.share_urls), key=lambda r: r.ext_id)
    if shared:
        print(
            f"  {len(shared)} workspaces hold a clone of dashboard {TEMPLATE}, shared, e.g. "
            f"{shared[0].ext_id}: {shared[0].share_urls[TEMPLATE]}"
        )

    sample = sorted(r.id for r in companies if r.ok)[:SAMPLE]
    stats = conduit.tokens.stats
    issued_before = sum(fake.stats.tokens_issued.values())
    print()
    print(f"Company-scoped calls (integrations + connect URL) for {len(sample)} companies:")
    calls = 2 * len(sample)
    rounds = (
        ("with the tokens from the create responses", 0.0),
        (f"after jumping the shared clock {JUMP / 60:.0f} minutes (every token expired)", JUMP),
    )
    for label, jump in rounds:
        clock.advance(jump)
        fetches, sent = stats.company_fetches, conduit.requests_sent
        await _company_calls(conduit, sample)
        print(
            f"  {label}: {calls} calls, {conduit.requests_sent - sent} requests, "
            f"{stats.company_fetches - fetches} token fetches"
        )
    issued = sum(fake.stats.tokens_issued.values())
    expired = fake.stats.expired_token_requests
    print()
    print(
        f"Company tokens issued by the server: {issued:,} "
        f"({issued_before:,} by provisioning, {issued - issued_before:,} fetched on demand)"
    )
    print(
        f"Requests made by the client: {conduit.requests_sent:,} "
        f"(the server answered {fake.stats.requests_total:,})"
    )
    print(f"Requests that carried an expired token: {expired}")
    return 0 if tally.failed == 0 and expired == 0 else 1
