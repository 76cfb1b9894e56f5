"""Profile the SDK side of a benchmark: ``python -m benchmarks.profiling [bulk|call]``.

``bulk`` provisions companies through ``companies.provision`` (as the bulk-create
benchmark does), ``call`` makes company-scoped calls with a cached token (as the
per-call benchmark does), with the fake server in its own process so the profile holds
only the client. Uses pyinstrument when it is installed (``pip install pyinstrument``),
cProfile otherwise; ``--aiohttp`` profiles the raw aiohttp loop instead, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from .bulk import company_ids, connect, create_raw_aiohttp, create_sdk
from .overhead import create_companies, drive, raw_call, sdk_call
from .server import FakeServer, ServerInfo

__all__ = ["main"]


def _bulk(info: ServerInfo, companies: int, raw: bool) -> Callable[[], Coroutine[Any, Any, None]]:
    creator = create_raw_aiohttp if raw else create_sdk
    ids = company_ids("PROF" + ("R" if raw else "S"), companies)

    async def work() -> None:
        await creator(info, company_ids("PROFW", 200), 64)  # warm-up, also profiled
        failed = await creator(info, ids, 64)
        if failed:
            raise RuntimeError(f"{failed} creates failed")

    return work


def _call(info: ServerInfo, calls: int, raw: bool) -> Callable[[], Coroutine[Any, Any, None]]:
    async def work() -> None:
        ids = company_ids("PROFC", 64)
        async with connect(info) as conduit, aiohttp.ClientSession() as http:
            await create_companies(conduit, ids)
            tokens = {cid: await conduit.companies.token(cid) for cid in ids}
            call = raw_call(http, info, tokens) if raw else sdk_call(conduit)
            await drive(call, ids, calls, 1)

    return work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__)
    parser.add_argument("what", choices=("bulk", "call"), nargs="?", default="bulk")
    parser.add_argument("-n", type=int, default=10_000, help="companies (bulk) or calls (call)")
    parser.add_argument("--aiohttp", action="store_true", help="profile the raw aiohttp loop")
    parser.add_argument("--cprofile", action="store_true", help="cProfile even if pyinstrument")
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    args = parser.parse_args(argv)

    with FakeServer() as info:
        work = (_bulk if args.what == "bulk" else _call)(info, args.n, args.aiohttp)
        try:
            if args.cprofile:
                raise ImportError
            from pyinstrument import Profiler
        except ImportError:
            profile = cProfile.Profile()
            started = time.perf_counter()
            profile.runcall(asyncio.run, work())
            elapsed = time.perf_counter() - started
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out).sort_stats("tottime")
            stats.print_stats(40)
            print(out.getvalue())
        else:
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            started = time.perf_counter()
            with profiler:
                asyncio.run(work())
            elapsed = time.perf_counter() - started
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            if args.html:
                with open(args.html, "w", encoding="utf-8") as html:
                    html.write(profiler.output_html())
    print(f"{args.what} ({'aiohttp' if args.aiohttp else 'SDK'}), n={args.n}: {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
