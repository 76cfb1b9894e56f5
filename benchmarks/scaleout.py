"""Scale-out: many worker processes, one company-token cache on Redis (or none).

A web app in production is several worker processes. Each scenario runs N worker
processes (spawned, each with its own `Conduit`) against one fake server in its own
process, with short company tokens, making random company-scoped calls over many
companies at a steady rate for a fixed time:

(a) one process alone making all the calls, in-memory store (what one cache costs);
(b) N processes, each with its own in-memory store;
(c) N processes sharing a `RedisTokenStore`;
(d) (c) against a server that revokes a company's earlier tokens when it issues one;
(e) (c) with redis-server killed at 35 % of the run and restarted at 60 %.

Reported per scenario: tokens fetched per company, failed calls, expired tokens sent,
401s, p50/p99 call latency. Targets: (c) tokens per company <= 1.2 x (a); (d) 401s <=
a quarter of the tokens issued and no failed call; (e) no failed call and no expired
token; p99 of (c) within 1.2 x of (b).

A p99 moves a lot from run to run on a busy machine, and a ratio of two of them more:
(b) and (c) are measured alternately over `rounds` rounds (3 by default), and the p99
ratio reported is the median of the rounds' ratios; the (b) and (c) figures shown are
those of the median round.

``python -m benchmarks.scaleout [--quick] [--rounds N]`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

import attrs

from conduit_async import Conduit
from conduit_async.stores import RedisTokenStore

from .bulk import company_ids
from .overhead import INTEGRATION_ID, create_companies
from .report import Report, Target
from .server import FakeServer, ServerInfo
from .stats import summarize

__all__ = [
    "FULL_SCALEOUT",
    "QUICK_SCALEOUT",
    "ScaleoutSize",
    "median_of_rounds",
    "report_scaleout",
    "run_scaleout",
]

#: The share of the run after which the caches count as warm (the "warm" latencies
#: leave out the first fetch of every token by every worker).
WARM_UP = 0.2
#: Concurrent calls a worker allows itself (beyond it, a scheduled call waits).
_WORKER_CONCURRENCY = 32


@attrs.frozen
class ScaleoutSize:
    workers: int = 6
    companies: int = 120
    seconds: float = 12.0
    token_ttl: float = 4.0
    #: Calls per second per worker (random companies, open loop); a scenario with fewer
    #: workers makes the same number of calls.
    rate: float = 25.0
    #: Rounds of (b) then (c); the p99 ratio reported is the median of the rounds'.
    rounds: int = 3


FULL_SCALEOUT = ScaleoutSize()
QUICK_SCALEOUT = ScaleoutSize(
    workers=3, companies=30, seconds=4.0, token_ttl=2.0, rate=25.0, rounds=1
)


@attrs.frozen
class Scenario:
    key: str
    label: str
    workers: int
    shared: bool = False
    revoke: bool = False
    kill_redis: bool = False


def scenarios(n: int) -> tuple[Scenario, ...]:
    return (
        Scenario("a", "1 process, in-memory", 1),
        Scenario("b", f"{n} processes, in-memory", n),
        Scenario("c", f"{n} processes, Redis", n, shared=True),
        Scenario("d", f"{n} processes, Redis, revoke on reissue", n, shared=True, revoke=True),
        Scenario("e", f"{n} processes, Redis killed 35-60 %", n, shared=True, kill_redis=True),
    )


# -- a worker process ----------------------------------------------------------------


def _worker(config: dict[str, Any], ready: Connection, go: Any) -> None:
    """One worker process: wait for the start, call for `seconds`, send the figures."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run
    # Everything a worker loads at start-up (the SDK, redis-py, cryptography) is loaded
    # before the start, as in a web app: only the calls are measured.
    from conduit_async import Conduit
    from conduit_async.stores import RedisTokenStore

    store = None
    if config["redis_url"] is not None:
        store = RedisTokenStore.from_url(config["redis_url"], key=config["key"])
    conduit = Conduit(
        config["org_token"],
        config["link_token"],
        base_url=config["base_url"],
        link_base_url=config["link_base_url"],
        token_store=store,
        seed=config["seed"],
    )
    ready.send("ready")
    go.wait()
    ready.send(asyncio.run(_work(conduit, store, config)))
    ready.close()


async def _work(
    conduit: Conduit, store: RedisTokenStore | None, config: dict[str, Any]
) -> dict[str, Any]:
    rng = random.Random(config["seed"])
    ids: list[str] = config["ids"]
    samples: list[int] = []
    #: Latencies of calls started once the caches are warm (after the first WARM_UP).
    steady: list[int] = []
    errors: dict[str, int] = {}
    limit = asyncio.Semaphore(_WORKER_CONCURRENCY)
    clock = time.perf_counter_ns
    async with conduit:

        async def call(cid: str) -> None:
            async with limit:
                start = clock()
                try:
                    await conduit.company(cid).connect_url(INTEGRATION_ID)
                except Exception as exc:  # counted: a failed call is a finding
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                else:
                    samples.append(clock() - start)
                    if start >= warm:
                        steady.append(samples[-1])

        interval = 1.0 / config["rate"]
        cpu = time.process_time()
        started = time.monotonic()
        warm = clock() + int(WARM_UP * config["seconds"] * 1e9)
        tasks = []
        k = 0
        while True:
            due = started + k * interval
            if due >= started + config["seconds"]:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(call(rng.choice(ids))))
            k += 1
        await asyncio.gather(*tasks)
        cpu = time.process_time() - cpu
        broker = conduit.tokens.stats
        figures: dict[str, Any] = {
            "samples": samples,
            "steady": steady,
            "cpu_seconds": cpu,
            "errors": errors,
            "company_fetches": broker.company_fetches,
            "background_refreshes": broker.background_refreshes,
        }
        if store is not None:
            figures["store"] = attrs.asdict(store.stats)
    return figures


# -- redis-server, started and killed by the benchmark --------------------------------


class _RedisServer:
    """A throwaway redis-server on a free loopback port, no persistence."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.directory = tempfile.TemporaryDirectory(prefix="conduit-scaleout-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", self.directory.name),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self.kill()
        self.directory.cleanup()


@contextmanager
def _redis() -> Iterator[_RedisServer | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    server = _RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.close()


# -- one scenario ----------------------------------------------------------------------


def _run_scenario(
    scenario: Scenario, size: ScaleoutSize, redis: _RedisServer | None, log: Callable[[str], None]
) -> dict[str, Any]:
    if scenario.shared and redis is None:
        return {"skipped": "redis-server is not installed (apt-get install redis-server)"}
    # In its own process, with per-route counters (for the 401s).
    server = FakeServer(token_ttl=size.token_ttl, fast=False, revoke_on_reissue=scenario.revoke)
    ids = company_ids("SCALE", size.companies)
    with server as info:
        asyncio.run(_create(info, ids))
        before = info.fake_stats()
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        ctx = multiprocessing.get_context("spawn")
        go = ctx.Event()
        pipes, procs = [], []
        for i in range(scenario.workers):
            parent, child = ctx.Pipe()
            config = {
                "org_token": info.org_token,
                "link_token": info.link_token,
                "base_url": info.base_url,
                "link_base_url": info.link_base_url,
                "redis_url": redis.url if scenario.shared and redis is not None else None,
                "key": key,
                "ids": ids,
                "seed": i,
                # The same work in every scenario: one process alone makes all the calls.
                "rate": size.rate * size.workers / scenario.workers,
                "seconds": size.seconds,
            }
            proc = ctx.Process(target=_worker, args=(config, child, go), daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        try:
            for pipe in pipes:
                pipe.recv()  # "ready"
            go.set()
            if scenario.kill_redis and redis is not None:
                _kill_and_restart(redis, size.seconds)
            figures = [pipe.recv() for pipe in pipes]
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
        after = info.fake_stats()
        if redis is not None:
            _flush(redis)
    return _summary(scenario, size, before, after, figures, log)


async def _create(info: ServerInfo, ids: list[str]) -> None:
    from .bulk import connect

    async with connect(info) as conduit:
        await create_companies(conduit, ids)


def _kill_and_restart(redis: _RedisServer, seconds: float) -> None:
    def chaos() -> None:
        time.sleep(seconds * 0.35)
        redis.kill()
        time.sleep(seconds * 0.25)
        redis.start()

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    thread.join()


def _flush(redis: _RedisServer) -> None:
    """Empty Redis between scenarios (RESP by hand: no client library needed here)."""
    try:
        with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as s:
            s.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            s.recv(16)
    except OSError:
        pass


def _summary(
    scenario: Scenario,
    size: ScaleoutSize,
    before: dict[str, Any],
    after: dict[str, Any],
    figures: list[dict[str, Any]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    issued = sum(after["tokens_issued"].values()) - sum(before["tokens_issued"].values())
    unauthorized = _count(after, "401") - _count(before, "401")
    samples = [s for f in figures for s in f["samples"]]
    failed = sum(sum(f["errors"].values()) for f in figures)
    errors: dict[str, int] = {}
    for f in figures:
        for name, n in f["errors"].items():
            errors[name] = errors.get(name, 0) + n
    store: dict[str, int] = {}
    for f in figures:
        for name, n in f.get("store", {}).items():
            store[name] = store.get(name, 0) + n
    latency = summarize(samples).as_dict()
    steady = summarize([s for f in figures for s in f["steady"]]).as_dict()
    result = {
        "label": scenario.label,
        "workers": scenario.workers,
        "calls": len(samples) + failed,
        "tokens_issued": issued,
        "tokens_per_company": issued / size.companies,
        "failed_calls": failed,
        "errors": errors,
        "expired_tokens_sent": after["expired_token_requests"] - before["expired_token_requests"],
        "unauthorized": unauthorized,
        "latency": latency,
        "steady_latency": steady,
        "company_fetches": sum(f["company_fetches"] for f in figures),
        "client_cpu_us_per_call": sum(f["cpu_seconds"] for f in figures)
        / max(1, len(samples) + failed)
        * 1e6,
        "store": store,
    }
    log(
        f"  ({scenario.key}) {scenario.label:40} {result['tokens_per_company']:5.1f} tokens/company"
        f"  {failed} failed  {result['expired_tokens_sent']} expired  {unauthorized} 401s"
        f"  p50 {latency['p50_us'] / 1000:.1f} ms  p99 {latency['p99_us'] / 1000:.1f} ms"
        f"  (warm: p50 {steady['p50_us'] / 1000:.1f} ms  p99 {steady['p99_us'] / 1000:.1f} ms)"
        f"  client CPU {result['client_cpu_us_per_call']:.0f} µs/call"
    )
    if store:
        log("      shared store: " + ", ".join(f"{k} {v}" for k, v in store.items() if v))
    return result


def _count(stats: dict[str, Any], outcome: str) -> int:
    return sum(per_route.get(outcome, 0) for per_route in stats["requests"].values())


# -- the whole run -----------------------------------------------------------------------


def run_scaleout(
    size: ScaleoutSize = FULL_SCALEOUT, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every scenario in turn, (b) and (c) alternately for `size.rounds` rounds (one
    redis-server for all, emptied between them)."""
    result: dict[str, Any] = {"size": attrs.asdict(size)}
    by_key = {scenario.key: scenario for scenario in scenarios(size.workers)}

    def run(key: str) -> dict[str, Any]:
        r = _run_scenario(by_key[key], size, redis, log)
        if not _ran(r):
            log(f"  ({key}) {by_key[key].label}: skipped, {r['skipped']}")
        return r

    with _redis() as redis:
        result["a"] = run("a")
        rounds = []
        for i in range(size.rounds):
            if size.rounds > 1:
                log(f"  round {i + 1}/{size.rounds} of (b) and (c):")
            pair = {"b": run("b"), "c": run("c")}
            if _ran(pair["b"], pair["c"]):
                pair.update(_ratios(pair["b"], pair["c"]))
                log(f"      p99 (c)/(b) this round: {pair['c_p99_vs_b']:.2f}")
            rounds.append(pair)
        result["d"] = run("d")
        result["e"] = run("e")
    result["rounds"] = rounds
    result.update(median_of_rounds(rounds))
    if "c_p99_vs_b_rounds" in result:
        log(
            "  p99 (c)/(b) per round: "
            + ", ".join(f"{r:.2f}" for r in result["c_p99_vs_b_rounds"])
            + f"; median {result['c_p99_vs_b']:.2f}"
        )
    a, c, d = (result[k] for k in "acd")
    if _ran(a, c):
        result["c_tokens_vs_a"] = c["tokens_per_company"] / a["tokens_per_company"]
    if _ran(d):
        result["d_401_share"] = d["unauthorized"] / max(1, d["tokens_issued"])
    return result


def median_of_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds' p99 ratios, their medians, and the (b) and (c) figures to show: those
    of the round whose ratio is the median (the lower middle one for an even count), or
    of the last round when no round measured both."""
    measured = [pair for pair in rounds if "c_p99_vs_b" in pair]
    if not measured:
        return {"b": rounds[-1]["b"], "c": rounds[-1]["c"]}
    ratios = [pair["c_p99_vs_b"] for pair in measured]
    middle = sorted(measured, key=lambda pair: pair["c_p99_vs_b"])[(len(measured) - 1) // 2]
    return {
        "b": middle["b"],
        "c": middle["c"],
        "c_p99_vs_b_rounds": ratios,
        "c_p99_vs_b": statistics.median(ratios),
        "c_warm_p99_vs_b": statistics.median(pair["c_warm_p99_vs_b"] for pair in measured),
    }


def _ratios(b: dict[str, Any], c: dict[str, Any]) -> dict[str, float]:
    """(c)'s p99 over (b)'s, over all calls and over the calls once warm."""
    return {
        "c_p99_vs_b": c["latency"]["p99_us"] / b["latency"]["p99_us"],
        "c_warm_p99_vs_b": c["steady_latency"]["p99_us"] / b["steady_latency"]["p99_us"],
    }


def _ran(*results: dict[str, Any]) -> bool:
    return all("skipped" not in r for r in results)


def report_scaleout(result: dict[str, Any], report: Report) -> None:
    """The headline rows, with the issue's targets."""
    for key in "abcde":
        r = result[key]
        if not _ran(r):
            continue
        what = f"scale-out ({key}) {r['label']}"
        report.add(f"scaleout.{key}.tokens", f"{what}: tokens/company", r["tokens_per_company"], "")
        report.add(f"scaleout.{key}.p50", f"{what}: p50", r["latency"]["p50_us"] / 1000, "ms")
        report.add(f"scaleout.{key}.p99", f"{what}: p99", r["latency"]["p99_us"] / 1000, "ms")
        report.add(f"scaleout.{key}.401", f"{what}: 401s", r["unauthorized"], "")
        zero = Target("==", 0) if key in "de" else None
        report.add(f"scaleout.{key}.failed", f"{what}: failed calls", r["failed_calls"], "", zero)
        expired = Target("==", 0) if key == "e" else None
        report.add(
            f"scaleout.{key}.expired",
            f"{what}: expired sent",
            r["expired_tokens_sent"],
            "",
            expired,
        )
    if "c_tokens_vs_a" in result:
        report.add(
            "scaleout.c_tokens_vs_a",
            "scale-out: tokens/company, (c) Redis / (a) one process",
            result["c_tokens_vs_a"],
            "x",
            Target("<=", 1.2),
        )
    if "c_warm_p99_vs_b" in result:
        report.add(
            "scaleout.c_warm_p99_vs_b",
            "scale-out: p99 once warm, (c) Redis / (b) in-memory",
            result["c_warm_p99_vs_b"],
            "x",
        )
    for i, ratio in enumerate(result.get("c_p99_vs_b_rounds", ()), 1):
        report.add(
            f"scaleout.c_p99_vs_b.round{i}",
            f"scale-out: p99, (c) Redis / (b) in-memory, round {i}",
            ratio,
            "x",
        )
    if "c_p99_vs_b" in result:
        rounds = len(result.get("c_p99_vs_b_rounds", ()))
        report.add(
            "scaleout.c_p99_vs_b",
            f"scale-out: p99, (c) Redis / (b) in-memory, median of {rounds} round(s)",
            result["c_p99_vs_b"],
            "x",
            Target("<=", 1.2),
        )
    if "d_401_share" in result:
        report.add(
            "scaleout.d_401_share",
            "scale-out (d): 401s / tokens issued",
            result["d_401_share"],
            "x",
            Target("<=", 0.25),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small case, for CI")
    parser.add_argument("--workers", type=int, help="worker processes (default 6)")
    parser.add_argument(
        "--rounds",
        type=_positive,
        help="rounds of (b) and (c), alternately; the median p99 ratio is reported "
        f"(default {FULL_SCALEOUT.rounds}, {QUICK_SCALEOUT.rounds} with --quick)",
    )
    args = parser.parse_args(argv)
    size = QUICK_SCALEOUT if args.quick else FULL_SCALEOUT
    if args.workers:
        size = attrs.evolve(size, workers=args.workers)
    if args.rounds:
        size = attrs.evolve(size, rounds=args.rounds)
    result = run_scaleout(size, log=lambda m: print(m, file=sys.stderr, flush=True))
    report = Report()
    report_scaleout(result, report)
    print(report.table())
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


if __name__ == "__main__":
    sys.exit(main())
