"""Across expiry: company-scoped calls under steady traffic while tokens keep expiring.

The same run with short-lived company tokens (several lifetimes pass during it) and
with tokens that outlive it, each on a fresh fake server and a fresh client. If the
broker refreshes ahead of expiry, no caller waits for a fetch and the tail latency of
the two matches; the server must never see an expired token. Runs alternate A B, B A,
... so that drift in the machine's speed falls on both alike; latencies are pooled.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from .bulk import company_ids, connect
from .overhead import INTEGRATION_ID, create_companies
from .server import FakeServer, ServerInfo
from .stats import summarize

__all__ = ["NEVER_EXPIRES", "run_expiry", "traffic"]

#: A lifetime far beyond the run (the SDK trusts no token for more than 600 s anyway).
NEVER_EXPIRES = 1e6


async def traffic(
    info: ServerInfo, *, companies: int, seconds: float, concurrency: int, prefix: str
) -> tuple[dict[str, Any], list[int]]:
    """`concurrency` workers calling companies round-robin for `seconds` of wall time.

    Returns the run's summary and its latencies in nanoseconds.
    """
    ids = company_ids(prefix, companies)
    samples: list[int] = []
    errors: dict[str, int] = {}
    clock = time.perf_counter_ns
    async with connect(info) as conduit:
        await create_companies(conduit, ids)
        counter = itertools.count()
        deadline = time.monotonic() + seconds
        sent_before = conduit.requests_sent
        server_cpu = info.cpu_seconds()

        async def worker() -> None:
            for i in counter:
                if time.monotonic() >= deadline:
                    return
                view = conduit.company(ids[i % companies])
                start = clock()
                try:
                    await view.connect_url(INTEGRATION_ID)
                except Exception as exc:  # counted and shown: a failed call is a finding
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                else:
                    samples.append(clock() - start)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_after = info.cpu_seconds()
        stats = conduit.tokens.stats
        calls = len(samples) + sum(errors.values())
        summary = {
            "token_ttl": info.token_ttl,
            "seconds": elapsed,
            "calls": calls,
            "calls_per_second": calls / elapsed,
            "client_cpu_us_per_call": cpu / calls * 1e6,
            "server_cpu_us_per_call": (
                None
                if server_cpu is None or server_after is None
                else (server_after - server_cpu) / calls * 1e6
            ),
            "errors": errors,
            "latency": summarize(samples).as_dict(),
            "company_fetches": stats.company_fetches,
            "background_refreshes": stats.background_refreshes,
            "refresh_failures": stats.refresh_failures,
            "requests_sent": conduit.requests_sent - sent_before,
        }
    return summary, samples


def run_expiry(
    *,
    ttl: float,
    seconds: float,
    rounds: int,
    companies: int,
    concurrency: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`rounds` rounds of both runs, each run on a fresh server, pooled per variant."""
    variants = {"expiring": ttl, "never_expiring": NEVER_EXPIRES}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    pooled: dict[str, list[int]] = {name: [] for name in variants}
    for round_no in range(1, rounds + 1):
        order = list(variants) if round_no % 2 else list(reversed(variants))
        for name in order:
            with FakeServer(token_ttl=variants[name]) as info:
                summary, samples = asyncio.run(
                    traffic(
                        info,
                        companies=companies,
                        seconds=seconds,
                        concurrency=concurrency,
                        prefix="EXP",
                    )
                )
                fake = info.fake_stats()
            summary["expired_token_requests"] = fake["expired_token_requests"]
            summary["server_requests_total"] = fake["requests_total"]
            runs[name].append(summary)
            pooled[name] += samples
            lat = summary["latency"]
            log(
                f"  expiry round {round_no} {name:15} p50 {lat['p50_us']:7.0f} µs  "
                f"p99 {lat['p99_us']:7.0f} µs  {summary['calls_per_second']:6.0f} calls/s  "
                f"{summary['background_refreshes']} refreshes, "
                f"{summary['expired_token_requests']} expired, {sum(summary['errors'].values())} "
                "failed"
            )
    result: dict[str, Any] = {
        "ttl": ttl,
        "seconds": seconds,
        "rounds": rounds,
        "companies": companies,
        "concurrency": concurrency,
        "lifetimes_crossed_per_run": seconds / ttl,
    }
    for name in variants:
        result[name] = {
            "latency": summarize(pooled[name]).as_dict(),
            "expired_token_requests": sum(r["expired_token_requests"] for r in runs[name]),
            "failed_calls": sum(sum(r["errors"].values()) for r in runs[name]),
            "runs": runs[name],
        }
    expiring, steady = result["expiring"]["latency"], result["never_expiring"]["latency"]
    result["p50_ratio"] = expiring["p50_us"] / steady["p50_us"]
    result["p99_ratio"] = expiring["p99_us"] / steady["p99_us"]
    return result
