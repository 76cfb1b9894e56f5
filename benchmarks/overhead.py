"""Per-call overhead: one company-scoped call through the SDK versus raw aiohttp.

Both send ``GET {link}credentials/connect/1/`` with the same company's token: the SDK
as ``await conduit.company(cid).connect_url(1)`` with the token already cached by the
create, raw aiohttp with that token pasted into the header. The difference is what the
SDK costs per call: validation, the broker's cache hit, the session's bookkeeping and
the model parsing. Latency includes the server's time (and at concurrency 1 it is most
of it), so each contender's client CPU per call (``process_time`` over its turns) is
reported next to it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from conduit_async import Conduit

from .bulk import company_ids, connect
from .raw import bearer, get_json, raw_session
from .server import ServerInfo
from .stats import summarize

__all__ = ["drive", "run_overhead"]

#: One call for one company; raises on failure.
Call = Callable[[str], Awaitable[object]]

INTEGRATION_ID = 1


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


async def create_companies(conduit: Conduit, ids: Sequence[str], concurrency: int = 32) -> None:
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
    async with connect(info) as conduit:
        await create_companies(conduit, ids)
        tokens = {cid: await conduit.companies.token(cid) for cid in ids}
        fetches = conduit.tokens.stats.company_fetches
        async with raw_session(max(64, *concurrencies)) as http:
            contenders = {"sdk": sdk_call(conduit), "aiohttp": raw_call(http, info, tokens)}
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
                per_call = {name: cpu[name] / (calls * rounds) * 1e6 for name in contenders}
                result[f"c{concurrency}"] = {
                    "sdk": {**sdk.as_dict(), "client_cpu_us_per_call": per_call["sdk"]},
                    "aiohttp": {**raw.as_dict(), "client_cpu_us_per_call": per_call["aiohttp"]},
                    "overhead_p50": sdk.p50_us / raw.p50_us - 1.0,
                    "overhead_p99": sdk.p99_us / raw.p99_us - 1.0,
                }
        # Every SDK call above must have used the token cached at create time.
        result["sdk_token_fetches_during_calls"] = conduit.tokens.stats.company_fetches - fetches
    return result
