"""Interactive traffic under rate limits: what a person waiting on a web page sees.

A web app makes company-scoped calls (``conduit.company(cid).connect_url(1)``, tokens
cached) from `concurrency` request handlers at once, for a few seconds, while the
server answers 1 % of those calls with ``429`` and ``Retry-After: 1``. Reported: calls
answered per second, p50/p99 latency of every call (a failure is an answer too), and
the failures by type.

Two variants, each on a fresh server with the same seeded faults:

- ``before``: the client as it comes. A 429 pauses every request of the client until
  ``Retry-After`` has passed: right for a batch, slow for a page a person waits for.
- ``after``: ``Conduit(retry=RetryPolicy(max_wait=0.2))``, for an SDK whose
  `RetryPolicy` takes a ``max_wait``: a call that would have to wait longer fails fast
  with ``RateLimitError`` instead. Skipped (and said so) with an SDK that has none.

The server runs in a child process of its own (started here, because it needs its
fault plan before the first request).
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from conduit_async import Conduit, RetryPolicy
from conduit_async.testing import FakeConduit, Fault

from .bulk import company_ids
from .overhead import INTEGRATION_ID, create_companies
from .server import ServerInfo
from .stats import summarize

__all__ = ["ROUTE", "after_policy", "run_interactive"]

#: The route the calls use, and the one the faults are planned on.
ROUTE = "GET /link/credentials/connect/{integration_id}/"
MAX_WAIT = 0.2
_START_TIMEOUT = 30.0


def after_policy() -> RetryPolicy | None:
    """``RetryPolicy(max_wait=0.2)``, or None when this SDK's policy has no ``max_wait``."""
    try:
        return RetryPolicy(max_wait=MAX_WAIT)  # type: ignore[call-arg, unused-ignore]
    except TypeError:
        return None


def _serve(conn: Connection, rate: float, retry_after: float, seed: int) -> None:
    """The child: a fast fake server whose `ROUTE` answers 429 at `rate`; announces
    itself on `conn` and stops when the parent closes its end (or dies)."""

    async def main() -> None:
        async with FakeConduit(fast=True, seed=seed) as fake:
            fake.faults.random(ROUTE, rate=rate, kinds=[Fault.status(429, retry_after=retry_after)])
            conn.send(
                {
                    "url": fake.url,
                    "base_url": fake.base_url,
                    "link_base_url": fake.link_base_url,
                    "org_token": fake.org_token,
                    "link_token": fake.link_token,
                }
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_reader(conn.fileno(), stop.set)
            await stop.wait()
            loop.remove_reader(conn.fileno())
            conn.send(fake.stats.faults_injected.get("status_429", 0))

    asyncio.run(main())


async def _traffic(
    info: ServerInfo,
    retry: RetryPolicy | None,
    *,
    companies: int,
    seconds: float,
    concurrency: int,
) -> tuple[dict[str, Any], list[int]]:
    ids = company_ids("WEB", companies)
    samples: list[int] = []
    ok: list[int] = []
    errors: dict[str, int] = {}
    clock = time.perf_counter_ns
    conduit = Conduit(
        info.org_token,
        info.link_token,
        base_url=info.base_url,
        link_base_url=info.link_base_url,
        **({"retry": retry} if retry is not None else {}),
    )
    async with conduit:
        await create_companies(conduit, ids)
        counter = itertools.count()
        deadline = time.monotonic() + seconds

        async def handler() -> None:
            for i in counter:
                if time.monotonic() >= deadline:
                    return
                start = clock()
                try:
                    await conduit.company(ids[i % companies]).connect_url(INTEGRATION_ID)
                except Exception as exc:  # counted: a failed call is the finding
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                else:
                    ok.append(clock() - start)
                samples.append(clock() - start)

        started = time.perf_counter()
        await asyncio.gather(*(handler() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    summary = {
        "seconds": elapsed,
        "calls": len(samples),
        "calls_per_second": len(samples) / elapsed,
        "latency": summarize(samples).as_dict(),
        "latency_succeeded": summarize(ok).as_dict(),
        "failed": sum(errors.values()),
        "errors": errors,
    }
    return summary, samples


def _variant(
    retry: RetryPolicy | None,
    *,
    rate: float,
    seed: int,
    companies: int,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child, rate, 1.0, seed), daemon=True)
    server.start()
    child.close()
    try:
        try:
            if not parent.poll(_START_TIMEOUT):
                raise RuntimeError(f"the faulty fake server did not start in {_START_TIMEOUT:g} s")
            announced = parent.recv()
        except EOFError:
            raise RuntimeError("the faulty fake server exited before announcing itself") from None
        assert server.pid is not None
        info = ServerInfo(**announced, token_ttl=600.0, pid=server.pid)
        summary, _ = asyncio.run(
            _traffic(info, retry, companies=companies, seconds=seconds, concurrency=concurrency)
        )
        parent.send("stop")
        summary["server_429s"] = parent.recv() if parent.poll(_START_TIMEOUT) else None
    finally:
        parent.close()
        server.join(5.0)
        if server.is_alive():
            server.kill()
            server.join()
    return summary


def run_interactive(
    *,
    seconds: float,
    concurrency: int,
    companies: int,
    rate: float = 0.01,
    seed: int = 12,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both variants (the second only if the SDK supports it) on fresh faulty servers."""
    variants: dict[str, RetryPolicy | None] = {"before": None}
    after = after_policy()
    result: dict[str, Any] = {
        "seconds": seconds,
        "concurrency": concurrency,
        "companies": companies,
        "rate_429": rate,
        "retry_after": 1.0,
        "max_wait": MAX_WAIT,
        "after_supported": after is not None,
    }
    if after is not None:
        variants["after"] = after
    else:
        log("  interactive: RetryPolicy has no max_wait in this SDK; 'after' skipped")
    for name, retry in variants.items():
        summary = _variant(
            retry,
            rate=rate,
            seed=seed,
            companies=companies,
            seconds=seconds,
            concurrency=concurrency,
        )
        result[name] = summary
        lat = summary["latency"]
        log(
            f"  interactive {name:6} {summary['calls_per_second']:7.0f} calls/s  "
            f"p50 {lat['p50_us'] / 1000:7.1f} ms  p99 {lat['p99_us'] / 1000:7.1f} ms  "
            f"{summary['failed']} failed {summary['errors']}, "
            f"{summary['server_429s']} 429s sent"
        )
    return result
