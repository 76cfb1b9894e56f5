"""The token broker: what a cache hit costs, and what filling an empty cache costs.

A hit is timed as a tight loop in one coroutine (``await`` included, as a caller pays
it), several repeats of many calls each; the same loop around a coroutine that does
nothing is timed too, so the reader can see how much of a hit is the loop itself. The
cold fill asks a fresh client for the tokens of many existing companies at once: every
one must cost exactly one fetch (no stampede, no duplicate, none skipped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .bulk import company_ids, connect
from .raw import create_lean
from .server import ServerInfo
from .stats import median

__all__ = ["run_broker", "time_hits"]

TokenCall = Callable[[str], Awaitable[str]]


async def _nothing(company_id: str) -> str:
    return company_id


async def time_hits(call: TokenCall, company_id: str, calls: int, repeats: int) -> list[float]:
    """Nanoseconds per call of `call(company_id)`, one figure per repeat."""
    per_call: list[float] = []
    clock = time.perf_counter_ns
    await call(company_id)
    for _ in range(repeats):
        start = clock()
        for _ in range(calls):
            await call(company_id)
        per_call.append((clock() - start) / calls)
    return per_call


async def run_broker(
    info: ServerInfo,
    *,
    hit_calls: int,
    hit_repeats: int,
    cold_fill: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    result: dict[str, Any] = {"hit_calls": hit_calls, "hit_repeats": hit_repeats}

    async with connect(info) as conduit:
        cid = "BrokerHit1"
        await conduit.companies.create(cid, name="Broker hit")
        stats = conduit.tokens.stats
        before = (stats.company_fetches, stats.background_refreshes)
        loops: dict[str, TokenCall] = {
            "companies_token": conduit.companies.token,
            "tokens_company_token": conduit.tokens.company_token,
            "empty_loop": _nothing,
        }
        for name, call in loops.items():
            figures = await time_hits(call, cid, hit_calls, hit_repeats)
            result[name] = {"median_ns": median(figures), "min_ns": min(figures), "runs": figures}
            log(f"  token hit {name:22} {median(figures):7.0f} ns/call (median)")
        # A hit must be a hit: nothing fetched, nothing refreshed while timing.
        result["fetches_while_timing"] = (
            stats.company_fetches - before[0] + stats.background_refreshes - before[1]
        )

    ids = company_ids("COLD", cold_fill)
    failed = await create_lean(info, ids, 64)
    if failed:
        raise RuntimeError(f"could not create the cold-fill companies ({failed} failed)")
    async with connect(info, token_cache_size=max(10_000, cold_fill)) as conduit:
        start = time.perf_counter()
        tokens = await asyncio.gather(*(conduit.companies.token(cid) for cid in ids))
        elapsed = time.perf_counter() - start
        result["cold_fill"] = {
            "companies": cold_fill,
            "seconds": elapsed,
            "per_second": cold_fill / elapsed,
            "company_fetches": conduit.tokens.stats.company_fetches,
            "requests_sent": conduit.requests_sent,
            "distinct_tokens": len(set(tokens)),
        }
    log(
        f"  cold fill {cold_fill} companies in {elapsed:.2f} s, "
        f"{result['cold_fill']['company_fetches']} fetches"
    )
    return result
