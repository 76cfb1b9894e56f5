"""Per-call overhead: one company-scoped call through the SDK versus raw aiohttp.

Both send ``GET {link}credentials/connect/1/`` with the same company's token: the SDK
as ``await conduit.company(cid).connect_url(1)`` with the token already cached by the
create, raw aiohttp with that token pasted into the header. The difference is what the
SDK costs per call: validation, the broker's cache hit, the session's bookkeeping and
the model parsing. Latency includes the server's time (and at concurrency 1 it is most
of it), so each contender's client CPU per call (``process_time`` over its turns) is
reported next to it.

Both pools hold the same connections when measured. aiohttp reuses the idle connection
that has waited longest, so calls made one at a time rotate over every connection a pool
holds; raw aiohttp over 32 connections measured about 3 % more p50 latency at
concurrency 1 than over one (the median of five runs). The creates open
`CREATE_CONCURRENCY` connections in the SDK's pool, so the raw pool is first driven at
that concurrency too, and each pool's idle connections are reported per concurrency.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from conduit_async import Conduit

from .bulk import company_ids, connect
from .raw import bearer, get_json, raw_session
from .server import ServerInfo
from .stats import summarize

__all__ = ["drive", "idle_connections", "prepared", "run_overhead"]

#: One call for one company; raises on failure.
Call = Callable[[str], Awaitable[object]]

INTEGRATION_ID = 1
#: How many creates run at once before the calls (and so the connections both pools hold).
CREATE_CONCURRENCY = 32


def idle_connections(http: aiohttp.ClientSession) -> int:
    """How many connections `http`'s pool holds idle (aiohttp counts them only privately)."""
    connector = http.connector
    return sum(len(conns) for conns in connector._conns.values()) if connector else 0


async def drive(call: Call, companies: Sequence[str], calls: int, concurrency: int) -> list[int]:
    """`calls` calls by `concurrency` workers, companies round-robin; latencies in ns."""
    samples: list[int] = []
    counter = itertools.count()
    n = len(companies)
    clock = time.perf_counter_ns

    async def worker() -> None:
        for i in counter:
            if i >= calls:
                return
            cid = companies[i % n]
            start = clock()
            await call(cid)
            samples.append(clock() - start)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def create_companies(
    conduit: Conduit, ids: Sequence[str], concurrency: int = CREATE_CONCURRENCY
) -> None:
    """Create `ids` through the SDK, which caches each one's token from the response."""
    limit = asyncio.Semaphore(concurrency)

    async def create(cid: str) -> None:
        async with limit:
            await conduit.companies.create(cid, name=f"Company {cid}")

    await asyncio.gather(*(create(cid) for cid in ids))


def sdk_call(conduit: Conduit) -> Call:
    async def call(cid: str) -> object:
        return await conduit.company(cid).connect_url(INTEGRATION_ID)

    return call


def raw_call(http: aiohttp.ClientSession, info: ServerInfo, tokens: dict[str, str]) -> Call:
    """The same GET, the lean raw way (`raw.get_json`), the header built per call."""
    url = f"{info.link_base_url}credentials/connect/{INTEGRATION_ID}/"

    async def call(cid: str) -> object:
        return (await get_json(http, url, bearer(tokens[cid])))["url"]

    return call


@asynccontextmanager
async def prepared(
    info: ServerInfo, ids: Sequence[str], limit: int = 64
) -> AsyncIterator[tuple[Conduit, dict[str, aiohttp.ClientSession], dict[str, Call]]]:
    """Both contenders, ready: the companies created through the SDK (which caches their
    tokens), and the raw pool driven at the creates' concurrency, so that both pools hold
    the same connections. Yields the client, each contender's aiohttp session (the raw one
    of `limit` connections), and the calls."""
    async with connect(info) as conduit:
        await create_companies(conduit, ids)
        tokens = {cid: await conduit.companies.token(cid) for cid in ids}
        async with raw_session(limit) as http:
            contenders = {"sdk": sdk_call(conduit), "aiohttp": raw_call(http, info, tokens)}
            await drive(contenders["aiohttp"], ids, len(ids), CREATE_CONCURRENCY)
            sdk_http = conduit._session.http
            assert sdk_http is not None  # made by the creates
            yield conduit, {"sdk": sdk_http, "aiohttp": http}, contenders


async def run_overhead(
    info: ServerInfo,
    *,
    companies: int,
    calls: int,
    rounds: int,
    concurrencies: Sequence[int],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """p50/p99 of both contenders at each concurrency, SDK and raw alternating per round."""
    ids = company_ids("OVH", companies)
    result: dict[str, Any] = {"companies": companies, "calls_per_round": calls, "rounds": rounds}
    limit = max(64, *concurrencies)
    async with prepared(info, ids, limit) as (conduit, pools, contenders):
        fetches = conduit.tokens.stats.company_fetches
        for concurrency in concurrencies:
            samples: dict[str, list[int]] = {name: [] for name in contenders}
            cpu: dict[str, float] = dict.fromkeys(contenders, 0.0)
            for call in contenders.values():  # warm-up: connections, code paths
                await drive(call, ids, max(200, concurrency * 4), concurrency)
            for round_no in range(1, rounds + 1):
                for name, call in contenders.items():
                    started = time.process_time()
                    samples[name] += await drive(call, ids, calls, concurrency)
                    cpu[name] += time.process_time() - started
                log(f"  per-call c={concurrency} round {round_no} done")
            sdk, raw = summarize(samples["sdk"]), summarize(samples["aiohttp"])
            entry: dict[str, Any] = {
                name: {
                    **summary.as_dict(),
                    "client_cpu_us_per_call": cpu[name] / (calls * rounds) * 1e6,
                    "idle_connections": idle_connections(pools[name]),
                }
                for name, summary in (("sdk", sdk), ("aiohttp", raw))
            }
            entry["overhead_p50"] = sdk.p50_us / raw.p50_us - 1.0
            entry["overhead_p99"] = sdk.p99_us / raw.p99_us - 1.0
            result[f"c{concurrency}"] = entry
        # Every SDK call above must have used the token cached at create time.
        result["sdk_token_fetches_during_calls"] = conduit.tokens.stats.company_fetches - fetches
    return result
