"""Bulk create: companies per second through ``companies.provision`` and hand-written loops.

Every contender does the same work: ``POST {link}company/`` with ``{"id", "name"}`` and
the Link APP token for every row, at most ``concurrency`` at a time over one connection
pool, and each reads and parses the JSON answer (see `benchmarks.raw`). The ratios are
taken against the lean aiohttp loop; the task-per-row loop and httpx (with limits sized
to the concurrency, and with its defaults) are references. httpx costs several times
more CPU per request, so its contenders create fewer companies per round. Every run
uses its own company ids, so nothing collides with an earlier run.

Client CPU is also split into user and system time, with the minor page faults
taken: they show whether the kernel, rather than the client's own work, opened a
gap (`benchmarks.allocator` removes the one such cause found so far).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import attrs
import httpx

from conduit_async import CompanySpec, Conduit

from .raw import (
    create_httpx,
    create_httpx_default_limits,
    create_lean,
    create_tasks,
    httpx_connections,
    sized_limits,
)
from .server import ServerInfo
from .stats import median

__all__ = [
    "CONTENDERS",
    "LABELS",
    "BulkRun",
    "company_ids",
    "company_rows",
    "connect",
    "create_sdk",
    "run_bulk",
]

#: Creates the companies named by `ids`; returns how many failed.
Creator = Callable[[ServerInfo, list[str], int], Awaitable[int]]


def company_ids(prefix: str, count: int) -> list[str]:
    """`count` distinct company ids (letters and digits only, as the spec requires)."""
    return [f"{prefix}{i:07d}" for i in range(count)]


def company_rows(ids: Iterable[str]) -> Iterator[CompanySpec]:
    """Rows for ``provision``, made lazily: a generator streams, it is never a list."""
    for cid in ids:
        yield CompanySpec(cid, f"Company {cid}")


def connect(info: ServerInfo, *, token_cache_size: int = 10_000) -> Conduit:
    """A `Conduit` pointed at the fake server, with both of its tokens."""
    return Conduit(
        info.org_token,
        info.link_token,
        base_url=info.base_url,
        link_base_url=info.link_base_url,
        token_cache_size=token_cache_size,
    )


async def create_sdk(info: ServerInfo, ids: list[str], concurrency: int) -> int:
    """The SDK: ``conduit.companies.provision(rows, concurrency=...)``, rows streamed."""
    failed = 0
    async with connect(info) as conduit:
        async for result in conduit.companies.provision(company_rows(ids), concurrency=concurrency):
            if result.outcome != "created":  # fresh ids: anything else is a failure
                failed += 1
    return failed


CONTENDERS: dict[str, Creator] = {
    "sdk": create_sdk,
    "aiohttp": create_lean,
    "aiohttp_tasks": create_tasks,
    "httpx": create_httpx,
    "httpx_default": create_httpx_default_limits,
}
#: How the table names each contender.
LABELS = {
    "sdk": "SDK provision",
    "aiohttp": "raw aiohttp (lean loop)",
    "aiohttp_tasks": "raw aiohttp (task per row)",
    "httpx": "httpx (limits sized)",
    "httpx_default": "httpx (default limits)",
}
#: Contenders that create fewer companies per round (rates are per second all the same).
SLOW = frozenset({"httpx", "httpx_default"})


@attrs.frozen
class BulkRun:
    """One contender's timed run: wall, client CPU and server CPU time for `companies` creates.

    The server's CPU shows whether it, rather than the client, set the pace.
    """

    contender: str
    round: int
    companies: int
    failed: int
    seconds: float
    server_cpu_seconds: float | None
    user_seconds: float
    system_seconds: float
    page_faults: int

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds

    @property
    def per_second(self) -> float:
        return (self.companies - self.failed) / self.seconds

    @property
    def cpu_us_per_company(self) -> float:
        return self.cpu_seconds / self.companies * 1e6

    @property
    def system_us_per_company(self) -> float:
        return self.system_seconds / self.companies * 1e6

    @property
    def faults_per_company(self) -> float:
        return self.page_faults / self.companies

    def as_dict(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self),
            "cpu_seconds": self.cpu_seconds,
            "per_second": self.per_second,
            "cpu_us_per_company": self.cpu_us_per_company,
            "system_us_per_company": self.system_us_per_company,
            "faults_per_company": self.faults_per_company,
        }


async def timed(
    creator: Creator, info: ServerInfo, name: str, round_no: int, ids: list[str], conc: int
) -> BulkRun:
    server = info.cpu_seconds()
    # Client CPU from getrusage: user and system time (in microseconds, where os.times()
    # has 10 ms ticks) and page faults, from one reading before and one after.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    failed = await creator(info, ids, conc)
    wall = time.perf_counter() - wall
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    server_after = info.cpu_seconds()
    server_cpu = None if server is None or server_after is None else server_after - server
    return BulkRun(
        name,
        round_no,
        len(ids),
        failed,
        wall,
        server_cpu,
        user_seconds=usage_after.ru_utime - usage.ru_utime,
        system_seconds=usage_after.ru_stime - usage.ru_stime,
        page_faults=usage_after.ru_minflt - usage.ru_minflt,
    )


async def run_bulk(
    info: ServerInfo,
    *,
    companies: int,
    slow_companies: int,
    rounds: int,
    concurrency: int,
    contenders: dict[str, Creator] | None = None,
    warmup: int = 200,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Alternate the contenders (A B C A B C ...) for `rounds` rounds, after a warm-up.

    Each creates `companies` per round (`slow_companies` for httpx). Returns every run
    and, per contender, the median rate and client CPU; the ratios are of medians.
    """
    contenders = contenders or CONTENDERS
    tags = {name: f"T{n}" for n, name in enumerate(contenders)}
    for name, creator in contenders.items():
        await timed(creator, info, name, 0, company_ids(f"W{tags[name]}", warmup), concurrency)
    runs: list[BulkRun] = []
    for round_no in range(1, rounds + 1):
        for name, creator in contenders.items():
            count = slow_companies if name in SLOW else companies
            ids = company_ids(f"B{round_no}{tags[name]}", count)
            run = await timed(creator, info, name, round_no, ids, concurrency)
            runs.append(run)
            server_busy = (
                f", server busy {run.server_cpu_seconds / run.seconds:.0%}"
                if run.server_cpu_seconds is not None
                else ""
            )
            log(
                f"  bulk round {round_no} {name:13} {run.per_second:8.0f} companies/s "
                f"({run.cpu_us_per_company:.0f} µs client CPU each, "
                f"{run.system_us_per_company:.0f} of it system, "
                f"{run.faults_per_company:.2f} page faults{server_busy}, {run.failed} failed)"
            )
    summary: dict[str, Any] = {}
    for name in contenders:
        mine = [r for r in runs if r.contender == name]
        summary[name] = {
            "median_per_second": median([r.per_second for r in mine]),
            "median_cpu_us_per_company": median([r.cpu_us_per_company for r in mine]),
            "median_system_us_per_company": median([r.system_us_per_company for r in mine]),
            "median_faults_per_company": median([r.faults_per_company for r in mine]),
            "failed": sum(r.failed for r in mine),
        }
    connections: dict[str, Any] = {"requests": slow_companies, "concurrency": concurrency}
    if "httpx" in contenders or "httpx_default" in contenders:
        for name, limits in (("sized", sized_limits(concurrency)), ("default", httpx.Limits())):
            ids = company_ids(f"H{name[0].upper()}", slow_companies)
            opened = await httpx_connections(info, ids, concurrency, limits)
            connections[name] = opened
            connections[f"{name}_per_request"] = opened / slow_companies
            log(f"  httpx, {name} limits: {opened} connections opened for {slow_companies} creates")
    return {
        "httpx_connections": connections,
        "companies": companies,
        "slow_companies": slow_companies,
        "rounds": rounds,
        "concurrency": concurrency,
        "runs": [r.as_dict() for r in runs],
        "contenders": summary,
    }
