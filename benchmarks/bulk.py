"""Bulk create: companies per second through ``companies.provision`` and two hand-written loops.

The three contenders do the same work: ``POST {link}company/`` with ``{"id", "name"}``
and the Link APP token for every row, at most ``concurrency`` at a time over one
connection pool, and each reads and parses the JSON answer. Every run uses its own
company ids, so nothing collides with an earlier run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import aiohttp
import attrs
import httpx

from conduit_async import CompanySpec, Conduit

from .server import ServerInfo
from .stats import median

__all__ = [
    "CONTENDERS",
    "BulkRun",
    "company_ids",
    "company_rows",
    "connect",
    "create_raw_aiohttp",
    "create_raw_httpx",
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


async def create_raw_aiohttp(info: ServerInfo, ids: list[str], concurrency: int) -> int:
    """A hand-written aiohttp loop: one session, a semaphore, one task per company."""
    url = info.link_base_url + "company/"
    headers = {"Authorization": f"Bearer {info.link_token}"}
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=max(64, concurrency), limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def create(cid: str) -> bool:
            async with limit, http.post(url, json={"id": cid, "name": f"Company {cid}"}) as resp:
                data = await resp.json()
                return resp.status == 200 and data["id"] == cid

        results = await asyncio.gather(*(create(cid) for cid in ids))
    return results.count(False)


async def create_raw_httpx(info: ServerInfo, ids: list[str], concurrency: int) -> int:
    """The same loop on ``httpx.AsyncClient``, its pool sized to the concurrency."""
    url = info.link_base_url + "company/"
    headers = {"Authorization": f"Bearer {info.link_token}"}
    limit = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(
        max_connections=max(64, concurrency), max_keepalive_connections=max(64, concurrency)
    )
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30.0) as http:

        async def create(cid: str) -> bool:
            async with limit:
                resp = await http.post(url, json={"id": cid, "name": f"Company {cid}"})
                data = resp.json()
                return resp.status_code == 200 and data["id"] == cid

        results = await asyncio.gather(*(create(cid) for cid in ids))
    return results.count(False)


CONTENDERS: dict[str, Creator] = {
    "sdk": create_sdk,
    "aiohttp": create_raw_aiohttp,
    "httpx": create_raw_httpx,
}


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
    cpu_seconds: float
    server_cpu_seconds: float | None

    @property
    def per_second(self) -> float:
        return (self.companies - self.failed) / self.seconds

    @property
    def cpu_us_per_company(self) -> float:
        return self.cpu_seconds / self.companies * 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self),
            "per_second": self.per_second,
            "cpu_us_per_company": self.cpu_us_per_company,
        }


async def timed(
    creator: Creator, info: ServerInfo, name: str, round_no: int, ids: list[str], conc: int
) -> BulkRun:
    server = info.cpu_seconds()
    wall, cpu = time.perf_counter(), time.process_time()
    failed = await creator(info, ids, conc)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server_after = info.cpu_seconds()
    server_cpu = None if server is None or server_after is None else server_after - server
    return BulkRun(name, round_no, len(ids), failed, wall, cpu, server_cpu)


async def run_bulk(
    info: ServerInfo,
    *,
    companies: int,
    rounds: int,
    concurrency: int,
    contenders: dict[str, Creator] | None = None,
    warmup: int = 200,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Alternate the contenders (A B C A B C ...) for `rounds` rounds, after a warm-up.

    Returns every run and, per contender, the median rate and client CPU; the ratios
    are of medians.
    """
    contenders = contenders or CONTENDERS
    tags = {name: name[:3].upper() for name in contenders}
    for name, creator in contenders.items():
        await timed(creator, info, name, 0, company_ids(f"W{tags[name]}", warmup), concurrency)
    runs: list[BulkRun] = []
    for round_no in range(1, rounds + 1):
        for name, creator in contenders.items():
            ids = company_ids(f"B{round_no}{tags[name]}", companies)
            run = await timed(creator, info, name, round_no, ids, concurrency)
            runs.append(run)
            server_busy = (
                f", server busy {run.server_cpu_seconds / run.seconds:.0%}"
                if run.server_cpu_seconds is not None
                else ""
            )
            log(
                f"  bulk round {round_no} {name:8} {run.per_second:8.0f} companies/s "
                f"({run.cpu_us_per_company:.0f} µs client CPU each{server_busy}, "
                f"{run.failed} failed)"
            )
    summary: dict[str, Any] = {}
    for name in contenders:
        mine = [r for r in runs if r.contender == name]
        summary[name] = {
            "median_per_second": median([r.per_second for r in mine]),
            "median_cpu_us_per_company": median([r.cpu_us_per_company for r in mine]),
            "failed": sum(r.failed for r in mine),
        }
    return {
        "companies": companies,
        "rounds": rounds,
        "concurrency": concurrency,
        "runs": [r.as_dict() for r in runs],
        "contenders": summary,
    }
