"""``python -m benchmarks [NAME ...] [--quick] [--out PATH] [--only NAME ...]``

Runs the benchmarks against fake servers in child processes, prints a table of each
headline number against its target, and writes every number (and the machine) to a
JSON file: ``benchmarks/results/latest.json`` for a full run (the README's table is
built from it), ``benchmarks/results/quick.json`` (ignored by git) for ``--quick`` or a
run of only some benchmarks. Exits 0 whether or not targets are met: the table says
which are missed. Quick mode (CI) runs small sizes; its numbers are not meant to be
judged. ``python -m benchmarks instructions`` runs only the callgrind counts.
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

from . import allocator
from .broker import run_broker
from .bulk import LABELS, run_bulk
from .contenders import PAIRS
from .cpu import run_cpu
from .expiry import run_expiry
from .instructions import callgrind_available, run_instructions
from .interactive import run_interactive
from .memory import run_memory
from .overhead import run_overhead
from .report import Report, Target, UsageMeter, machine, write_json
from .scaleout import FULL_SCALEOUT, QUICK_SCALEOUT, report_scaleout, run_scaleout
from .server import FakeServer, ServerInfo
from .sizes import FULL, QUICK, Sizes
from .stats import median

BENCHMARKS = (
    "bulk",
    "overhead",
    "cpu",
    "instructions",
    "broker",
    "interactive",
    "expiry",
    "memory",
    "scaleout",
)
RESULTS = Path(__file__).resolve().parent / "results"
#: The committed results of the last full run, which the README's table is built from.
FULL_OUT = RESULTS / "latest.json"
#: Quick and partial runs (ignored by git): they never replace the full run's numbers.
QUICK_OUT = RESULTS / "quick.json"
MB = 1e6


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_bulk(info: ServerInfo, sizes: Sizes, report: Report) -> dict[str, Any]:
    result = asyncio.run(
        run_bulk(
            info,
            companies=sizes.bulk_companies,
            slow_companies=sizes.bulk_httpx_companies,
            rounds=sizes.bulk_rounds,
            concurrency=sizes.bulk_concurrency,
            log=log,
        )
    )
    rates = {name: c["median_per_second"] for name, c in result["contenders"].items()}
    sdk = rates["sdk"]
    n = f"{sizes.bulk_companies:,}"
    for name, label in LABELS.items():
        report.add(f"bulk.{name}", f"bulk create {n}: {label}", rates[name], "companies/s")
    # Also paired within each round (the contenders ran seconds apart): less sensitive
    # to a machine whose speed drifts between rounds.
    per_round: dict[int, dict[str, float]] = {r["round"]: {} for r in result["runs"]}
    for r in result["runs"]:
        per_round[r["round"]][r["contender"]] = r["per_second"]
    for other in rates:
        if other == "sdk":
            continue
        result[f"sdk_vs_{other}"] = sdk / rates[other]
        ratios = [rates_["sdk"] / rates_[other] for rates_ in per_round.values()]
        result[f"sdk_vs_{other}_per_round"] = ratios
        result[f"sdk_vs_{other}_median_of_rounds"] = median(ratios)
    report.add(
        "bulk.vs_aiohttp",
        "bulk create: SDK / raw aiohttp (lean loop)",
        result["sdk_vs_aiohttp"],
        "x",
        Target(">=", 0.95),
    )
    report.add(
        "bulk.vs_aiohttp_paired",
        "bulk create: SDK / raw aiohttp, round by round",
        result["sdk_vs_aiohttp_median_of_rounds"],
        "x",
    )
    report.add(
        "bulk.vs_aiohttp_tasks",
        "bulk create: SDK / raw aiohttp (task per row)",
        result["sdk_vs_aiohttp_tasks"],
        "x",
    )
    report.add(
        "bulk.vs_httpx",
        "bulk create: SDK / httpx (limits sized)",
        result["sdk_vs_httpx"],
        "x",
        Target(">=", 5.0),
    )
    report.add(
        "bulk.vs_httpx_default",
        "bulk create: SDK / httpx (default limits)",
        result["sdk_vs_httpx_default"],
        "x",
    )
    # What the client spent per company, and how much of it the kernel took (see
    # `benchmarks.bulk`): a gap in throughput is read against these.
    contenders = result["contenders"]
    sdk_run, raw_run = contenders["sdk"], contenders["aiohttp"]
    report.add(
        "bulk.cpu_vs_aiohttp",
        "bulk create: client CPU per company, SDK / raw aiohttp",
        sdk_run["median_cpu_us_per_company"] / raw_run["median_cpu_us_per_company"],
        "x",
    )
    for name in ("sdk", "aiohttp"):
        report.add(
            f"bulk.system_us.{name}",
            f"bulk create: {LABELS[name]}, client system CPU per company",
            contenders[name]["median_system_us_per_company"],
            "µs",
        )
        report.add(
            f"bulk.faults.{name}",
            f"bulk create: {LABELS[name]}, page faults per company",
            contenders[name]["median_faults_per_company"],
            "faults",
        )
    conns = result["httpx_connections"]
    for kind in ("sized", "default"):
        report.add(
            f"bulk.httpx_{kind}_connections",
            f"httpx ({kind} limits): connections opened per request",
            conns[f"{kind}_per_request"],
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
                f"call.c{c}.{name}.cpu",
                f"call c={c}: {who} client CPU per call",
                r[name]["client_cpu_us_per_call"],
                "µs",
            )
            report.add(
                f"call.c{c}.{name}.connections",
                f"call c={c}: {who} idle connections after the calls",
                r[name]["idle_connections"],
                "",
            )
        report.add(
            f"call.c{c}.overhead_p50",
            f"call c={c}: SDK overhead at p50",
            r["overhead_p50"] * 100,
            "%",
            Target("<=", 5.0 if c == 1 else 10.0),
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


def bench_cpu(info: ServerInfo, sizes: Sizes, report: Report) -> dict[str, Any]:
    result = asyncio.run(run_cpu(info, calls=sizes.cpu_calls, rounds=sizes.cpu_rounds, log=log))
    per = result["contenders"]
    for pair in PAIRS:
        for name in (pair.sdk, pair.raw, *pair.references):
            c = per[name]
            report.add(
                f"cpu.{pair.name}.{name}",
                f"client CPU per request, {name} (spread {c['min_us']:.0f}-{c['max_us']:.0f})",
                c["median_us"],
                "µs",
            )
        ratios = result["pairs"][pair.name]
        report.add(
            f"cpu.{pair.name}.ratio",
            f"client CPU, {pair.name}: SDK / raw "
            f"(rounds {ratios['round_ratio_min']:.2f}-{ratios['round_ratio_max']:.2f})",
            ratios["median_of_round_ratios"],
            "x",
        )
    return result


def bench_instructions(info: ServerInfo, sizes: Sizes, report: Report) -> dict[str, Any]:
    missing = callgrind_available()
    if missing is not None:
        log(f"  instructions skipped: {missing}")
        report.add("instructions.skipped", f"instructions: skipped ({missing})", None, "")
        return {"skipped": missing}
    result = run_instructions(
        info, count=sizes.instructions_count, repeats=sizes.instructions_repeats, log=log
    )
    for name, per in result["per_request"].items():
        report.add(f"instructions.{name}", f"instructions per request, {name}", per, "")
    for pair in PAIRS:
        entry = result["pairs"][pair.name]
        report.add(
            f"instructions.{pair.name}.ratio",
            f"instructions, {pair.name}: SDK / raw",
            entry["ratio"],
            "x",
            None if pair.target is None else Target("<=", pair.target),
        )
        for ref in pair.references:
            report.add(
                f"instructions.{pair.name}.ratio_vs_{ref}",
                f"instructions, {pair.name}: SDK / {ref}",
                entry[f"ratio_vs_{ref}"],
                "x",
            )
    return result


def bench_interactive(sizes: Sizes, report: Report) -> dict[str, Any]:
    result = run_interactive(
        seconds=sizes.interactive_seconds,
        concurrency=sizes.interactive_concurrency,
        companies=sizes.interactive_companies,
        log=log,
    )
    for name in ("before", "after"):
        if name not in result:
            continue
        r = result[name]
        what = f"web calls, 1 % 429s, {name}"
        report.add(f"interactive.{name}.rate", f"{what}: answered", r["calls_per_second"], "/s")
        for q in ("p50", "p99"):
            ms = r["latency"][f"{q}_us"] / 1000
            report.add(f"interactive.{name}.{q}", f"{what}: {q}", ms, "ms")
        report.add(f"interactive.{name}.failed", f"{what}: failed", r["failed"], "")
    if "after" not in result:
        report.add(
            "interactive.after.skipped",
            "web calls, after: skipped (RetryPolicy has no max_wait)",
            None,
            "",
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


def bench_scaleout(sizes: Sizes, report: Report) -> dict[str, Any]:
    """Many worker processes, with and without the shared Redis token store."""
    size = QUICK_SCALEOUT if sizes is QUICK else FULL_SCALEOUT
    result = run_scaleout(size, log=log)
    report_scaleout(result, report)
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

    if {"bulk", "overhead", "cpu", "instructions", "broker"} & set(only):
        with FakeServer() as info:
            step("bulk", lambda: bench_bulk(info, sizes, report))
            step("overhead", lambda: bench_overhead(info, sizes, report))
            step("cpu", lambda: bench_cpu(info, sizes, report))
            step("instructions", lambda: bench_instructions(info, sizes, report))
            step("broker", lambda: bench_broker(info, sizes, report))
    step("interactive", lambda: bench_interactive(sizes, report))
    step("expiry", lambda: bench_expiry(sizes, report))
    if "memory" in only:
        with FakeServer() as info:
            step("memory", lambda: bench_memory(info, sizes, report))
    step("scaleout", lambda: bench_scaleout(sizes, report))
    results["seconds"] = timings
    return results


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: do what Ctrl-C does (asyncio.run cancels its task cleanly on SIGINT)."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)


def plan(argv: list[str] | None) -> tuple[Sizes, tuple[str, ...], Path]:
    """The sizes, the benchmarks to run and the results file the command line asks for."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"run only these ({', '.join(BENCHMARKS)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"JSON results file ({FULL_OUT.name} for a full run, else {QUICK_OUT.name})",
    )
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=[], help="run only these")
    args = parser.parse_args(argv)
    chosen = [*args.names, *args.only]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    sizes = QUICK if args.quick else FULL
    only = tuple(name for name in BENCHMARKS if name in chosen) if chosen else BENCHMARKS
    # Only a full run of everything replaces the committed results.
    judged = sizes is FULL and only == BENCHMARKS
    out: Path = args.out or (FULL_OUT if judged else QUICK_OUT)
    return sizes, only, out


def main(argv: list[str] | None = None) -> int:
    sizes, only, out = plan(argv)
    judged = sizes is FULL and only == BENCHMARKS
    allocator.settle()  # before any server starts: they inherit it
    # SIGTERM stops the run like Ctrl-C does: the fake servers are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
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
        "judged": judged,
        "elapsed_seconds": elapsed,
        "machine": machine(),
        "machine_usage": usage,
        "sizes": attrs.asdict(sizes),
        "metrics": report.as_dict(),
        "missed": [m.key for m in report.missed],
        "results": results,
    }
    write_json(out, document)
    print()
    print(report.table())
    print()
    missed = report.missed
    if sizes is QUICK:
        print(f"quick mode: sizes are small and numbers are not judged ({elapsed:.0f} s).")
    for reason in meter.noise(usage):
        print(f"warning: {reason}; the numbers are noisy.")
    if missed:
        print(f"targets missed ({len(missed)}): " + "; ".join(m.label for m in missed))
    else:
        print("every target met.")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
