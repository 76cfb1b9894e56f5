"""Memory: RSS while provisioning a stream of rows, and bytes per cached company token.

Each figure is measured in a fresh child process (``python -m benchmarks.memory rss``
or ``... tokens``), so nothing the parent allocated before counts; the child prints
one JSON line. The RSS child reads its server and tokens from the ``CONDUIT_*``
environment variables, as any application would.

``rss``: peak RSS growth while ``companies.provision`` consumes rows from a generator
(see `measure_rss` for how the peak is taken). ``tokens``: the tracemalloc difference
around caching `count` realistic leases through ``conduit.tokens.remember_company``,
divided by `count`: the key, the lease, the token string and the store's own
bookkeeping, everything the cache keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .server import ServerInfo

__all__ = ["main", "measure_rss", "measure_token_bytes", "run_memory"]

_ROOT = Path(__file__).resolve().parent.parent


def _max_rss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _status(field: str) -> int | None:
    """A size from /proc/self/status (``VmRSS``, ``VmHWM``) in bytes; None if unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak RSS (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


async def measure_rss(rows: int, concurrency: int) -> dict[str, Any]:
    """Provision `rows` companies streamed from a generator; RSS before, during, after.

    The growth is the peak RSS during the run minus the RSS just before it. On Linux
    the peak is the kernel's own high-water mark (VmHWM), reset when the run starts,
    so it misses nothing between samples. ``ru_maxrss`` cannot serve alone: it is a
    peak since the process began, and in a child it even includes the parent's size
    at fork, which hides any growth below it. It is reported as a cross-check, with
    VmRSS sampled every 50 ms.
    """
    from conduit_async import CompanySpec, Conduit

    produced = 0
    received = 0
    failed = 0
    max_ahead = 0

    def stream() -> Iterator[CompanySpec]:
        nonlocal produced
        for i in range(rows):
            produced += 1
            cid = f"MEM{i:08d}"
            yield CompanySpec(cid, f"Company {cid}")

    peak_sampled = 0

    async def sample() -> None:
        nonlocal peak_sampled
        while True:
            peak_sampled = max(peak_sampled, _status("VmRSS") or 0)
            await asyncio.sleep(0.05)

    gc.collect()
    baseline_rss, baseline_maxrss = _status("VmRSS"), _max_rss_bytes()
    hwm_reset = _reset_peak()
    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    async with Conduit() as conduit:
        async for result in conduit.companies.provision(stream(), concurrency=concurrency):
            received += 1
            if result.outcome != "created":
                failed += 1
            if produced - received > max_ahead:
                max_ahead = produced - received
        cached = len(conduit.tokens.store)
    elapsed = time.perf_counter() - started
    sampler.cancel()
    peak_hwm, peak_maxrss = _status("VmHWM"), _max_rss_bytes()
    if hwm_reset and peak_hwm is not None and baseline_rss is not None:
        method, growth = "VmHWM reset at start, minus VmRSS at start", peak_hwm - baseline_rss
    elif baseline_rss is not None and peak_sampled:
        method, growth = "VmRSS sampled every 50 ms", peak_sampled - baseline_rss
    else:
        method, growth = "ru_maxrss after minus before", peak_maxrss - baseline_maxrss
    return {
        "rows": rows,
        "results": received,
        "failed": failed,
        "seconds": elapsed,
        "rows_per_second": rows / elapsed,
        "max_rows_read_ahead": max_ahead,
        "tokens_cached_at_end": cached,
        "method": method,
        "peak_growth_bytes": growth,
        "baseline_vm_rss_bytes": baseline_rss,
        "peak_vm_hwm_bytes": peak_hwm if hwm_reset else None,
        "peak_vm_rss_sampled_bytes": peak_sampled or None,
        "final_vm_rss_bytes": _status("VmRSS"),
        "ru_maxrss_before_bytes": baseline_maxrss,
        "ru_maxrss_after_bytes": peak_maxrss,
    }


def measure_token_bytes(count: int) -> dict[str, Any]:
    """Bytes the broker keeps per cached company token, with realistic ids and tokens."""
    from conduit_async import ApiToken, Conduit

    # No request is ever sent: the URL only has to be valid.
    conduit = Conduit(
        "org", "link", link_base_url="http://127.0.0.1:9/link/", token_cache_size=count
    )
    broker = conduit.tokens
    now = time.time()
    expires = datetime.fromtimestamp(now + 600, tz=timezone.utc)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(count):
        # What a company response carries: a 35-character token, as the fake issues.
        api_token = ApiToken(token="ct_" + secrets.token_hex(16), expires_at=expires)
        broker.remember_issued(f"cust{i:08d}", api_token, now, now)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    ignore = (tracemalloc.Filter(False, tracemalloc.__file__),)
    diff = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    total = sum(stat.size_diff for stat in diff)
    top = [
        {"where": str(stat.traceback), "bytes": stat.size_diff, "blocks": stat.count_diff}
        for stat in diff[:5]
    ]
    return {
        "tokens": count,
        "cached": len(broker.store),
        "total_bytes": total,
        "bytes_per_token": total / count,
        "top_allocations": top,
    }


def _child(args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    merged = {**os.environ, **env}
    merged["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", *args],
        cwd=_ROOT,
        env=merged,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {args[0]} failed ({proc.returncode}):\n{proc.stderr}")
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def run_memory(
    info: ServerInfo, *, rows: int | None, tokens: int, concurrency: int
) -> dict[str, Any]:
    """Both measurements, each in a fresh child process; no RSS figure when `rows` is None."""
    env = {
        "CONDUIT_TOKEN": info.org_token,
        "CONDUIT_LINK_TOKEN": info.link_token,
        "CONDUIT_BASE_URL": info.base_url,
        "CONDUIT_LINK_BASE_URL": info.link_base_url,
    }
    rss = None
    if rows is not None:
        rss = _child(["rss", "--rows", str(rows), "--concurrency", str(concurrency)], env, 3600)
    per_token = _child(["tokens", "--count", str(tokens)], {}, 600)
    return {"rss": rss, "tokens": per_token}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    sub = parser.add_subparsers(dest="what", required=True)
    rss = sub.add_parser("rss", help="peak RSS growth while provisioning streamed rows")
    rss.add_argument("--rows", type=int, default=200_000)
    rss.add_argument("--concurrency", type=int, default=64)
    tokens = sub.add_parser("tokens", help="bytes per cached company token")
    tokens.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.what == "rss":
        result = asyncio.run(measure_rss(args.rows, args.concurrency))
    else:
        result = measure_token_bytes(args.count)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
