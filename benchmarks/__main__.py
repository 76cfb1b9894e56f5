"""``python -m benchmarks [--quick] [--out PATH] [--only NAME ...]``

Runs the benchmarks against fake servers in child processes, prints a table of each
headline number against its target, and writes every number (and the machine) to a
JSON file. Exits 0 whether or not targets are met: the table says which are missed.
Quick mode (CI) runs small sizes; its numbers are not meant to be judged.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

from .broker import run_broker
from .bulk import run_bulk
from .expiry import run_expiry
from .memory import run_memory
from .overhead import run_overhead
from .report import Report, Target, UsageMeter, machine, write_json
from .server import FakeServer, ServerInfo
from .sizes import FULL, QUICK, Sizes
from .stats import median

BENCHMARKS = ("bulk", "overhead", "broker", "expiry", "memory")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"
MB = 1e6


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_bulk(info: ServerInfo, sizes: Sizes, report: Report) -> dict[str, Any]:
    result = asyncio.run(
        run_bulk(
            info,
            companies=sizes.bulk_companies,
            rounds=sizes.bulk_rounds,
            concurrency=sizes.bulk_concurrency,
            log=log,
        )
    )
    rates = {name: c["median_per_second"] for name, c in result["contenders"].items()}
    sdk = rates["sdk"]
    n = f"{sizes.bulk_companies:,}"
    report.add("bulk.sdk", f"bulk create {n}: SDK provision", sdk, "companies/s")
    report.add("bulk.aiohttp", f"bulk create {n}: raw aiohttp", rates["aiohttp"], "companies/s")
    report.add("bulk.httpx", f"bulk create {n}: httpx loop", rates["httpx"], "companies/s")
    vs_aiohttp = sdk / rates["aiohttp"]
    vs_httpx = sdk / rates["httpx"]
    result["sdk_vs_aiohttp"], result["sdk_vs_httpx"] = vs_aiohttp, vs_httpx
    # Also paired within each round (the contenders ran seconds apart): less sensitive
    # to a machine whose speed drifts between rounds.
    per_round: dict[int, dict[str, float]] = {r["round"]: {} for r in result["runs"]}
    for r in result["runs"]:
        per_round[r["round"]][r["contender"]] = r["per_second"]
    for other in ("aiohttp", "httpx"):
        ratios = [rates_["sdk"] / rates_[other] for rates_ in per_round.values()]
        result[f"sdk_vs_{other}_per_round"] = ratios
        result[f"sdk_vs_{other}_median_of_rounds"] = median(ratios)
    report.add("bulk.vs_aiohttp", "bulk create: SDK / aiohttp", vs_aiohttp, "x", Target(">=", 0.9))
    report.add("bulk.vs_httpx", "bulk create: SDK / httpx", vs_httpx, "x", Target(">=", 5.0))
    report.add(
        "bulk.vs_aiohttp_paired",
        "bulk create: SDK / aiohttp, round by round",
        result["sdk_vs_aiohttp_median_of_rounds"],
        "x",
    )
    return result


def bench_overhead(info: ServerInfo, sizes: Sizes, report: Report) -> dict[str, Any]:
    result = asyncio.run(
        run_overhead(
            info,
            companies=sizes.overhead_companies,
            calls=sizes.overhead_calls,
            rounds=sizes.overhead_rounds,
            concurrencies=sizes.overhead_concurrencies,
            log=log,
        )
    )
    for c in sizes.overhead_concurrencies:
        r = result[f"c{c}"]
        for name in ("sdk", "aiohttp"):
            who = "SDK" if name == "sdk" else "raw aiohttp"
            for q in ("p50", "p99"):
                report.add(
                    f"call.c{c}.{name}.{q}", f"call c={c}: {who} {q}", r[name][f"{q}_us"], "µs"
                )
        report.add(
            f"call.c{c}.overhead_p50",
            f"call c={c}: SDK overhead at p50",
            r["overhead_p50"] * 100,
            "%",
            Target("<=", 10.0),
        )
        report.add(
            f"call.c{c}.overhead_p99",
            f"call c={c}: SDK overhead at p99",
            r["overhead_p99"] * 100,
            "%",
        )
        report.add(
            f"call.c{c}.extra_cpu",
            f"call c={c}: SDK client CPU over aiohttp",
            r["sdk"]["client_cpu_us_per_call"] - r["aiohttp"]["client_cpu_us_per_call"],
            "µs",
        )
    return result


def bench_broker(info: ServerInfo, sizes: Sizes, report: Report) -> dict[str, Any]:
    result = asyncio.run(
        run_broker(
            info,
            hit_calls=sizes.hit_calls,
            hit_repeats=sizes.hit_repeats,
            cold_fill=sizes.cold_fill,
            log=log,
        )
    )
    report.add(
        "token.hit.companies_token",
        "token hit: companies.token()",
        result["companies_token"]["median_ns"],
        "ns",
        Target("<=", 1000.0),
    )
    report.add(
        "token.hit.tokens_company_token",
        "token hit: tokens.company_token()",
        result["tokens_company_token"]["median_ns"],
        "ns",
        Target("<=", 1000.0),
    )
    report.add(
        "token.hit.empty_loop",
        "token hit: the loop alone (await of a no-op)",
        result["empty_loop"]["median_ns"],
        "ns",
    )
    cold = result["cold_fill"]
    n = cold["companies"]
    report.add("token.cold.seconds", f"cold fill {n:,}: elapsed", cold["seconds"], "s")
    report.add(
        "token.cold.fetches",
        f"cold fill {n:,}: company fetches",
        cold["company_fetches"],
        "",
        Target("==", n),
    )
    return result


def bench_expiry(sizes: Sizes, report: Report) -> dict[str, Any]:
    result = run_expiry(
        ttl=sizes.expiry_ttl,
        seconds=sizes.expiry_seconds,
        rounds=sizes.expiry_rounds,
        companies=sizes.expiry_companies,
        concurrency=sizes.expiry_concurrency,
        log=log,
    )
    what = f"ttl {sizes.expiry_ttl:g} s for {sizes.expiry_seconds:g} s"
    for name, label in (("expiring", what), ("never_expiring", "never expiring")):
        lat = result[name]["latency"]
        report.add(f"expiry.{name}.p50", f"calls, {label}: p50", lat["p50_us"], "µs")
        report.add(f"expiry.{name}.p99", f"calls, {label}: p99", lat["p99_us"], "µs")
    report.add("expiry.p99_ratio", "expiry: p99 ratio", result["p99_ratio"], "x", Target("<=", 1.2))
    variants = ("expiring", "never_expiring")
    expired = sum(result[name]["expired_token_requests"] for name in variants)
    report.add("expiry.expired", "expiry: expired tokens sent", expired, "", Target("==", 0))
    failed = sum(result[name]["failed_calls"] for name in variants)
    report.add("expiry.failed", "expiry: failed calls", failed, "", Target("==", 0))
    return result


def bench_memory(info: ServerInfo, sizes: Sizes, report: Report) -> dict[str, Any]:
    result = run_memory(
        info,
        rows=sizes.memory_rows,
        tokens=sizes.memory_tokens,
        concurrency=sizes.bulk_concurrency,
    )
    rss = result["rss"]
    growth = rss["peak_growth_bytes"] / MB
    report.add(
        "memory.rss_growth",
        f"peak RSS growth, {sizes.memory_rows:,} streamed rows",
        growth,
        "MB",
        Target("<=", 50.0),
    )
    per_token = result["tokens"]
    report.add(
        "memory.bytes_per_token",
        f"memory per cached token ({sizes.memory_tokens:,})",
        per_token["bytes_per_token"],
        "B",
        Target("<=", 1024.0),
    )
    return result


def run(sizes: Sizes, only: tuple[str, ...], report: Report) -> dict[str, Any]:
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if name not in only:
            return
        log(f"== {name}")
        started = time.perf_counter()
        results[name] = fn()
        timings[name] = time.perf_counter() - started

    if {"bulk", "overhead", "broker"} & set(only):
        with FakeServer() as info:
            step("bulk", lambda: bench_bulk(info, sizes, report))
            step("overhead", lambda: bench_overhead(info, sizes, report))
            step("broker", lambda: bench_broker(info, sizes, report))
    step("expiry", lambda: bench_expiry(sizes, report))
    if "memory" in only:
        with FakeServer() as info:
            step("memory", lambda: bench_memory(info, sizes, report))
    results["seconds"] = timings
    return results


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: do what Ctrl-C does (asyncio.run cancels its task cleanly on SIGINT)."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON results file (%(default)s)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS, help="run only these"
    )
    args = parser.parse_args(argv)
    # SIGTERM stops the run like Ctrl-C does: the fake servers are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    sizes = QUICK if args.quick else FULL
    only = tuple(args.only)
    report = Report()
    meter = UsageMeter()
    started = time.perf_counter()
    log(f"conduit-async benchmarks ({sizes.name}): {', '.join(only)}")
    try:
        results = run(sizes, only, report)
    except KeyboardInterrupt:
        log("interrupted; the fake servers are stopped")
        return 130
    elapsed = time.perf_counter() - started
    usage = meter.summary()
    document = {
        "mode": sizes.name,
        "judged": not args.quick,
        "elapsed_seconds": elapsed,
        "machine": machine(),
        "machine_usage": usage,
        "sizes": attrs.asdict(sizes),
        "metrics": report.as_dict(),
        "missed": [m.key for m in report.missed],
        "results": results,
    }
    write_json(args.out, document)
    print()
    print(report.table())
    print()
    missed = report.missed
    if args.quick:
        print(f"quick mode: sizes are small and numbers are not judged ({elapsed:.0f} s).")
    for reason in meter.noise(usage):
        print(f"warning: {reason}; the numbers are noisy.")
    if missed:
        print(f"targets missed ({len(missed)}): " + "; ".join(m.label for m in missed))
    else:
        print("every target met.")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
