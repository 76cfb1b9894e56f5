"""Profile the SDK side of a benchmark: ``python -m benchmarks.profiling [bulk|call|callgrind]``.

``bulk`` provisions companies through ``companies.provision`` (as the bulk-create
benchmark does), ``call`` makes company-scoped calls with a cached token (as the
per-call benchmark does), with the fake server in its own process so the profile holds
only the client. Uses pyinstrument when it is installed (``pip install pyinstrument``),
cProfile otherwise; ``--aiohttp`` profiles the raw aiohttp loop instead, for comparison.
Both are sampling or tracing profilers inside the process they measure: pyinstrument
makes a request cost about 3.4 x what it costs without it, cProfile more, so read their
output as shares, never as absolute costs.

``callgrind --pair create|provision|integrations`` counts instructions instead, under
valgrind, with no profiler in the process: the SDK and the raw contender of the pair
(see `benchmarks.instructions`) each run `n` and `3n` requests, and every function's
instructions per request are the difference divided by `2n`. The table lists where the
SDK's instructions go that the raw loop's do not: SDK minus raw, per function, by
inclusive and by self cost. Python functions are named when the interpreter is 3.12 or
later (``--python``, which must have this project installed), which runs with
``-X perf`` so each Python function gets a trampoline callgrind can see; those
trampolines and the interpreter's calling machinery (skipped, see
`benchmarks.callgrind.GLUE`) make every call costlier than in a plain run, so the
absolute numbers are above those of ``python -m benchmarks instructions``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import fnmatch
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .bulk import company_ids, connect, create_sdk
from .callgrind import GLUE, function_costs, perf_map, pid_of, short_name
from .instructions import PAIRS, ROOT, callgrind_available, callgrind_run
from .overhead import create_companies, drive, raw_call, sdk_call
from .raw import create_lean, raw_session
from .server import FakeServer, ServerInfo

__all__ = ["main"]


def _bulk(info: ServerInfo, companies: int, raw: bool) -> Callable[[], Coroutine[Any, Any, None]]:
    creator = create_lean if raw else create_sdk
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
        async with connect(info) as conduit, raw_session(64) as http:
            await create_companies(conduit, ids)
            tokens = {cid: await conduit.companies.token(cid) for cid in ids}
            call = raw_call(http, info, tokens) if raw else sdk_call(conduit)
            await drive(call, ids, calls, 1)

    return work


#: Costs per request of one contender: {function: (self, inclusive)}.
PerRequest = dict[str, tuple[float, float]]


def _has_trampolines(python: str) -> bool:
    probe = "import sys; print(hasattr(sys, 'activate_stack_trampoline'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() == "True"


def _site_roots(python: str) -> tuple[str, ...]:
    """Path prefixes to cut from file names: the project, then the interpreter's paths."""
    probe = "import sys; print('\\n'.join(sorted(set(sys.path), key=len, reverse=True)))"
    done = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=False, cwd=ROOT
    )
    paths = [p for p in done.stdout.splitlines() if p.startswith("/")]
    return (str(ROOT), *paths)


def _per_request(
    info: ServerInfo, contender: str, count: int, python: str, trampolines: bool
) -> tuple[PerRequest, float]:
    """Every function's (self, inclusive) instructions per request, and the total."""
    with tempfile.TemporaryDirectory(prefix="conduit-profile-") as tmp:
        small, large = callgrind_run(
            info,
            contender,
            count,
            f"P{os.getpid()}{contender.replace('.', '')}",
            Path(tmp) / "callgrind.out",
            python=python,
            python_args=("-X", "perf") if trampolines else (),
            valgrind_args=[f"--fn-skip={glue}" for glue in GLUE] if trampolines else (),
        )
        pid = pid_of(large)
        names = perf_map(pid)
        costs = [function_costs(part, names) for part in (small, large)]
        Path(f"/tmp/perf-{pid}.map").unlink(missing_ok=True)
    n = 2 * count
    per: PerRequest = {}
    for name in costs[0].keys() | costs[1].keys():
        a, b = costs[0].get(name, (0, 0)), costs[1].get(name, (0, 0))
        per[name] = ((b[0] - a[0]) / n, (b[1] - a[1]) / n)
    total = sum(self_cost for self_cost, _ in per.values())
    return per, total


def _scaffolding(name: str, total: float | None, costs: PerRequest) -> bool:
    """What a table of differences should leave out: the skipped interpreter glue (its
    leftover entries are meaningless), trampolines without a name, the benchmark's own
    code and, given the `total`, the frames that hold most of every request (the event
    loop's, inclusive >= half the total)."""
    return (
        any(fnmatch.fnmatchcase(name, glue) for glue in GLUE)
        or name.startswith("0x")
        or "benchmarks/" in name
        or (total is not None and costs.get(name, (0.0, 0.0))[1] >= 0.5 * total)
    )


def callgrind_profile(info: ServerInfo, pair_name: str, count: int, python: str, top: int) -> str:
    """The table of where the SDK's extra instructions go, per request."""
    pair = next(p for p in PAIRS if p.name == pair_name)
    trampolines = _has_trampolines(python)
    with ThreadPoolExecutor(max_workers=2) as pool:  # callgrind runs a process each
        runs = [
            pool.submit(_per_request, info, name, count, python, trampolines)
            for name in (pair.sdk, pair.raw)
        ]
        (sdk, sdk_total), (raw, raw_total) = (run.result() for run in runs)
    roots = _site_roots(python)
    lines = [
        f"callgrind profile of {pair_name}: {pair.sdk} vs {pair.raw}, "
        f"{count} and {3 * count} requests, {python}" + (" -X perf" if trampolines else ""),
        f"instructions per request: SDK {sdk_total:,.0f}, raw {raw_total:,.0f} "
        f"(SDK / raw {sdk_total / raw_total:.2f}, SDK - raw {sdk_total - raw_total:,.0f})",
    ]
    if not trampolines:
        lines.append(
            "(C functions only: Python functions are named with a 3.12+ interpreter "
            "that has this project installed, given as --python)"
        )
    zero = (0.0, 0.0)

    def table(title: str, rows: list[tuple[str, float, float, float]]) -> None:
        lines.extend(["", title, f"{'extra':>9} {'SDK':>9} {'raw':>9}  function"])
        for name, more, mine, theirs in rows[:top]:
            lines.append(f"{more:>9,.0f} {mine:>9,.0f} {theirs:>9,.0f}  {short_name(name, roots)}")

    own = sorted((n for n in sdk if "conduit_async" in n), key=lambda n: -sdk[n][1])
    lines.extend(["", f"top {top} SDK functions by inclusive instructions per request:"])
    lines.append(f"{'inclusive':>9} {'self':>9}  function")
    for name in own[:top]:
        lines.append(f"{sdk[name][1]:>9,.0f} {sdk[name][0]:>9,.0f}  {short_name(name, roots)}")
    for title, index, shared in (
        ("self instructions per request, SDK minus raw", 0, False),
        ("inclusive instructions per request of functions both run, SDK minus raw", 1, True),
    ):
        names = [
            n
            for n in ((sdk.keys() & raw.keys()) if shared else (sdk.keys() | raw.keys()))
            if not _scaffolding(n, sdk_total if shared else None, sdk)
        ]
        rows = [
            (
                n,
                sdk.get(n, zero)[index] - raw.get(n, zero)[index],
                sdk.get(n, zero)[index],
                raw.get(n, zero)[index],
            )
            for n in names
        ]
        table(f"top {top} by {title}:", sorted(rows, key=lambda r: -r[1]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__)
    parser.add_argument("what", choices=("bulk", "call", "callgrind"), nargs="?", default="bulk")
    parser.add_argument(
        "-n", type=int, help="companies (bulk), calls (call), requests (callgrind: 10,000/100)"
    )
    parser.add_argument("--aiohttp", action="store_true", help="profile the raw aiohttp loop")
    parser.add_argument("--cprofile", action="store_true", help="cProfile even if pyinstrument")
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    parser.add_argument(
        "--pair", choices=[p.name for p in PAIRS], default="create", help="callgrind: which pair"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="callgrind: the interpreter (3.12+ names)"
    )
    parser.add_argument("--top", type=int, default=15, help="callgrind: rows per table")
    args = parser.parse_args(argv)

    if args.what == "callgrind":
        missing = callgrind_available()
        if missing:
            print(f"callgrind profile skipped: {missing}", file=sys.stderr)
            return 1
        with FakeServer() as info:
            print(callgrind_profile(info, args.pair, args.n or 100, args.python, args.top))
        return 0

    n = args.n or 10_000
    with FakeServer() as info:
        work = (_bulk if args.what == "bulk" else _call)(info, n, args.aiohttp)
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
            inflation = "cProfile inflates every call's cost several times over"
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
            inflation = "pyinstrument makes each request cost about 3.4 x"
    print(f"{args.what} ({'aiohttp' if args.aiohttp else 'SDK'}), n={n}: {elapsed:.2f} s")
    print(
        f"note: {inflation}: read the shares, not the times; "
        "for instruction counts use `python -m benchmarks.profiling callgrind`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
