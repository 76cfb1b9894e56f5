"""`conduit-async demo`: the product's main job, end to end, with no account and no set-up.

An embedded fake Conduit runs in this process on a free loopback port and
misbehaves as a real network and server do now and then: a share of requests
(`--faults`, seeded) gets a 429 with `Retry-After`, a 5xx, a connection reset,
or has its response lost after the server acted. The client and the server
share one clock: real time plus an offset, so that "ten minutes later" (every
company token expired) is one jump rather than a wait. The demo provisions
companies and workspaces concurrently, then calls company-scoped endpoints
before and after the jump, and shows from the server's own counters and state
what was survived: every fault, no object made twice, tokens fetched only when
needed, no expired token ever sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import TYPE_CHECKING

from .._retry import RetryPolicy
from ..client import Conduit
from ..errors import ConduitError
from ..provision import CompanySpec, ProvisionResult, WorkspaceResult, WorkspaceSpec
from ..provision._types import OUTCOMES
from ._config import UsageError
from ._exit import EXIT_FAILED, EXIT_OK
from ._progress import Progress, Tally, counted, make_progress

if TYPE_CHECKING:
    from ..testing import FakeConduit

__all__ = ["DEFAULT_FAULT_RATE", "ShiftedClock", "demo_command"]

#: Share of requests the demo's server answers with a fault, unless `--faults` says otherwise.
DEFAULT_FAULT_RATE = 0.03
#: Seconds of the injected 429s' `Retry-After`: whole seconds, as a real server sends them.
RETRY_AFTER = 1
#: Tries per request (the default policy makes 3).
DEMO_ATTEMPTS = 5
#: Routes that create something: a lost response there is what reconciling is for.
CREATES = (
    "POST /link/company/",
    "POST /v2/workspaces/",
    "POST /v2/dashboards/{dashboard_id}/clone/",
)

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


async def _company_calls(conduit: Conduit, ids: list[str]) -> list[ConduitError]:
    """What a web app does per tenant: list its integrations, make a connect link.
    Returns the calls' errors: one failed call is reported, not the end of the demo."""

    async def one(cid: str) -> tuple[object, object]:
        view = conduit.company(cid)
        return await asyncio.gather(
            view.integrations(), view.connect_url(INTEGRATION), return_exceptions=True
        )

    outcomes = await asyncio.gather(*(one(cid) for cid in ids))
    errors: list[ConduitError] = []
    for outcome in (o for pair in outcomes for o in pair):
        if isinstance(outcome, ConduitError):
            errors.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome  # a bug, not a failed call
    return errors


async def demo_command(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0 if every row succeeded and no expired token was sent."""
    from ..testing import FakeConduit  # aiohttp.web is only needed here

    if args.companies < 0 or args.workspaces < 0 or args.concurrency < 1:
        raise UsageError("--companies and --workspaces must be >= 0, --concurrency >= 1")
    if not 0.0 <= args.faults <= 1.0:
        raise UsageError("--faults must be a share of requests between 0 and 1")
    clock = ShiftedClock()
    async with FakeConduit(clock=clock, seed=0, port=0) as fake:
        print(f"Embedded fake Conduit server at {fake.url} (no account, no configuration)")
        if args.faults:
            _inject_faults(fake, args.faults)
            print(
                f"It gives {args.faults * 100:g}% of requests a fault: a 429 with Retry-After, "
                "a 5xx, a connection reset, or a response lost after it acted"
            )
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
            # More tries than the default 3: a fault rate far above a real server's must not
            # fail a call by chance (at 3 %, 3 faults in a row would, once in ~100 demos).
            retry=RetryPolicy(attempts=DEMO_ATTEMPTS),
        ) as conduit:
            return await _run(args, conduit, fake, clock)


def _inject_faults(fake: FakeConduit, rate: float) -> None:
    """Seeded random faults on every route, as a real network and server produce them."""
    from ..testing import Fault

    fake.faults.random(
        "*",
        rate=rate,
        kinds=[
            Fault.status(429, retry_after=RETRY_AFTER),
            Fault.status(500),
            Fault.status(503),
            Fault.reset(),
            Fault.lost(),
        ],
        # A 429 pauses every worker for a second: rarer, so that the demo stays quick.
        weights=[1, 2, 2, 3, 3],
    )


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
    except BaseException:
        progress.close(None)
        raise
    finally:
        tally.finish()
    progress.close(tally, complete=True)
    companies = [r for r in results if isinstance(r, ProvisionResult)]
    workspaces = [r for r in results if isinstance(r, WorkspaceResult)]
    print()
    print(
        f"Provisioned {counted(tally.done, 'row')} concurrently in {tally.elapsed:.2f} s "
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
        print("  (share URLs of the embedded server: they stop working when the demo ends)")

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
    failed_calls: list[ConduitError] = []
    for label, jump in rounds:
        clock.advance(jump)
        fetches, sent = stats.company_fetches, conduit.requests_sent
        errors = await _company_calls(conduit, sample)
        print(
            f"  {label}: {calls} calls, {conduit.requests_sent - sent} requests, "
            f"{stats.company_fetches - fetches} token fetches"
            + (f", {len(errors)} failed after every retry" if errors else "")
        )
        failed_calls += errors
    for error in failed_calls[:5]:
        print(f"  failed: {error}")
    issued = sum(fake.stats.tokens_issued.values())
    expired = fake.stats.expired_token_requests
    print()
    if args.faults:
        _print_faults(fake)
    duplicates = _duplicates(fake)
    print(
        f"Objects made twice on the server: {sum(duplicates.values())} "
        f"({', '.join(f'{n} {what}' for what, n in duplicates.items())})"
    )
    print(
        f"Company tokens issued by the server: {issued:,} "
        f"({issued_before:,} by provisioning, {issued - issued_before:,} fetched on demand)"
    )
    print(
        f"Requests made by the client: {conduit.requests_sent:,} "
        f"(the server received {fake.stats.requests_total:,})"
    )
    print(f"Requests that carried an expired token: {expired}")
    made_twice = sum(duplicates.values())
    ok = not (tally.failed or failed_calls or expired or made_twice)
    print()
    print(
        f"{'All survived' if ok else 'NOT all survived'}: {counted(tally.failed, 'row')} failed, "
        f"{counted(len(failed_calls), 'call')} failed, {counted(made_twice, 'object')} made "
        f"twice, {counted(expired, 'expired token')} sent"
    )
    return EXIT_OK if ok else EXIT_FAILED


def _print_faults(fake: FakeConduit) -> None:
    """What the server did wrong on purpose, from its own counters: all of it was survived
    if every row succeeded (the summary above says so)."""
    injected = fake.stats.faults_injected
    statuses = {label: n for label, n in injected.items() if label.startswith("status_")}
    lost_creates = sum(fake.stats.count(route, "lost") for route in CREATES)
    total = sum(injected.values())
    print(f"Faults injected by the server: {total:,} requests failed on purpose:")
    print(
        f"  {statuses.pop('status_429', 0):,} rate limits (429, Retry-After: {RETRY_AFTER} s): "
        "every worker paused, then went on"
    )
    codes = ", ".join(label.removeprefix("status_") for label in sorted(statuses))
    print(f"  {sum(statuses.values()):,} server errors ({codes or '5xx'}): retried after a backoff")
    print(f"  {injected.get('reset', 0):,} connection resets: retried")
    print(
        f"  {injected.get('lost', 0):,} responses lost after the server acted: "
        f"{lost_creates:,} creates reconciled (found, not made again), the rest retried"
    )


def _duplicates(fake: FakeConduit) -> Mapping[str, int]:
    """Extra copies in the server's state: a company, a workspace (by ext_id) or a clone of
    the template in one workspace that exists more than once."""
    companies = sum(n - 1 for n in fake.stats.companies_created.values() if n > 1)
    by_ext_id = Counter(ws.ext_id for ws in fake.workspaces.values() if ws.ext_id)
    template = fake.dashboards[TEMPLATE].name
    clones = Counter(
        d.workspace
        for d in fake.dashboards.values()
        if d.workspace is not None and d.name == template
    )
    return {
        "companies": companies,
        "workspaces": sum(n - 1 for n in by_ext_id.values()),
        "dashboard copies": sum(n - 1 for n in clones.values()),
    }
