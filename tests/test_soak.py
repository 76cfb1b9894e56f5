"""Fault soak: provision thousands of companies while one request in ten goes wrong.

Against the fake server with seeded random faults on every route (429 with
`Retry-After`, 500/502/503, connection resets, responses lost after the
server committed, and stalls longer than the client's timeout). Then use the
companies' own tokens, in rounds between which the clock jumps forward, so
that each token is used fresh, stale, past its hard margin and past its
expiry, under the same faults but the stall (see `SPEED` and `USE_ROUNDS`). Then:

- every row has a result, and failures (if any) are typed `ConduitError`s;
- every company exists exactly once on the server, and the companies on the
  server are exactly the rows that succeeded (a row may only be missing from
  the successes if its error says the outcome is unknown);
- no request carried an expired token;
- no task and no socket is left open once the client is closed.

The CLI part provisions from a CSV in a subprocess, is stopped with SIGTERM
midway, and resumes from its results file with no duplicate.

Figures (rows, faults injected per kind, retries, outcomes, elapsed) go to the
"soak report" at the end of the pytest run. `pytest --soak-size 10000` for more.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conduit_async import CompanySpec, Conduit, ConduitError, OutcomeUnknownError, RetryPolicy
from conduit_async.testing import FakeConduit, FakeServerInfo, FakeServerProcess, Fault

pytestmark = pytest.mark.soak

SEED = 20240601
RATE = 0.1
CONCURRENCY = 64
TIMEOUT = 0.5
#: Virtual seconds per real second. The broker stops serving a token when a tenth of its
#: life is left (60 s of a 600 s token); that margin has to cover the real time a request
#: spends between taking its token and reaching the server: waiting for a pooled
#: connection (up to the client's timeout) and any stall of the event loop, which the
#: server shares and which a busy machine pauses for 0.3-0.5 s at a time. This soak once
#: ran at 200x, where the margin was 0.3 s, less than TIMEOUT itself: on a loaded machine
#: (load 3-14 on 2 cores) 10 of 40 runs sent an expired token (3 of 20 on Python 3.10,
#: 7 of 20 on 3.11). At 5x the margin is 12 s of real time, and `USE_ROUNDS` makes the
#: token lifetimes pass.
SPEED = 5.0
TOKEN_TTL = 600.0

#: Every kind of trouble, weighted; the stall is rare (each costs a worker half a second).
PROVISION_FAULTS: list[tuple[Fault, float]] = [
    (Fault.status(429, retry_after=1), 2.0),
    (Fault.status(429, retry_after=1, retry_after_format="http-date"), 1.0),
    (Fault.status(500), 2.0),
    (Fault.status(502), 2.0),
    (Fault.status(503), 2.0),
    (Fault.reset(), 3.0),
    (Fault.lost(), 3.0),
    (Fault.latency(1.0), 0.15),
]
#: Using company tokens: the same without the stall. The fake looks at a stalled request's
#: token only after the stall, and the client gives up on it after TIMEOUT and retries,
#: so the round can end and the clock jump (`USE_ROUNDS`) before the server looks: a
#: token that was fine when sent would count as expired at its arrival.
USE_FAULTS = [(fault, weight) for fault, weight in PROVISION_FAULTS if fault.seconds == 0]
#: When the rounds of company calls start, in token lifetimes after provisioning ended
#: (the clock jumps there). The tokens are then fresh (0); fresh or stale by their jitter,
#: and a stale one is served while refreshed in the background (0.45); past the hard
#: margin, so callers wait for a new one, unless refreshed since (0.95); past expiry
#: unless refreshed since (1.6).
USE_ROUNDS = (0.0, 0.45, 0.95, 1.6)
#: The rounds call every USE_EVERY-th successful company: enough companies to keep every
#: worker on a different one, at the cost of about one round of all of them.
USE_EVERY = 4


class SpedUpClock:
    """Unix time that runs `speed` times faster than real time, shared by server and client."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._real0 = time.monotonic()
        self._t0 = 1_800_000_000.0

    def __call__(self) -> float:
        return self._t0 + (time.monotonic() - self._real0) * self.speed

    def advance(self, seconds: float) -> None:
        self._t0 += seconds


class RetryCounter(logging.Handler):
    """Counts the session's "retrying" log lines: one per retry, whatever the cause."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.retries += 1


@pytest.fixture
def retry_counter() -> Iterator[RetryCounter]:
    logger = logging.getLogger("conduit_async")
    handler = RetryCounter()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # tens of thousands of DEBUG lines: counted, not kept
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def open_sockets() -> int | None:
    """Sockets this process holds open, or None where /proc is not there to ask."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    count = 0
    for fd in fds:
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def plan(fake: FakeConduit, faults: list[tuple[Fault, float]]) -> None:
    fake.faults.random(
        "*",
        rate=RATE,
        kinds=[fault for fault, _ in faults],
        weights=[weight for _, weight in faults],
        seed=SEED,
    )


Row = tuple[str, str, BaseException | None]  # id, outcome, error
Provision = Callable[[Conduit, list[str]], Awaitable[list[Row]]]


async def create_each(conduit: Conduit, ids: list[str]) -> list[Row]:
    """The core SDK alone: `companies.create` for every id, CONCURRENCY at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(cid: str) -> Row:
        async with gate:
            try:
                await conduit.companies.create(cid, name=f"Company {cid}")
            except ConduitError as exc:
                return cid, "failed", exc
            return cid, "created", None

    return await asyncio.gather(*(one(cid) for cid in ids))


async def provision_each(conduit: Conduit, ids: list[str]) -> list[Row]:
    """`conduit.companies.provision`, as a user runs it."""
    specs = (CompanySpec(cid, name=f"Company {cid}") for cid in ids)
    return [
        (result.id, result.outcome, result.error)
        async for result in conduit.companies.provision(specs, concurrency=CONCURRENCY)
    ]


@contextlib.asynccontextmanager
async def no_leftovers() -> AsyncIterator[None]:
    """Fails if the block leaves a task running or a socket open."""
    sockets = open_sockets()
    tasks = asyncio.all_tasks()
    yield
    left: list[asyncio.Task[Any]] = []
    for _ in range(50):  # transports close on the loop's next turns
        await asyncio.sleep(0.01)
        left = [t for t in asyncio.all_tasks() - tasks if not t.done()]
        if not left and open_sockets() == sockets:
            break
    assert left == [], f"tasks left running: {left}"
    assert open_sockets() == sockets, "sockets left open"


async def use_tokens(
    conduit: Conduit, ids: list[str], clock: SpedUpClock
) -> list[BaseException | None]:
    """Call each company with its own token, one round at each of `USE_ROUNDS`. The errors
    (None for success)."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def use(cid: str) -> BaseException | None:
        async with gate:
            try:
                await conduit.company(cid).integrations()
            except ConduitError as exc:
                return exc
            return None

    provisioned = clock()
    used: list[BaseException | None] = []
    for lifetimes in USE_ROUNDS:
        clock.advance(max(0.0, provisioned + lifetimes * TOKEN_TTL - clock()))
        used += await asyncio.gather(*(use(cid) for cid in ids))
    return used


async def soak(
    provision: Provision, size: int, report: dict[str, Any], counter: RetryCounter, attempts: int
) -> None:
    clock = SpedUpClock(SPEED)
    ids = [f"soak{i}" for i in range(size)]
    async with FakeConduit(clock=clock, seed=SEED, token_ttl=TOKEN_TTL) as fake:
        conduit = fake.client(
            clock=clock,
            timeout=TIMEOUT,
            max_connections=CONCURRENCY,
            # Real (short) waits, so a 429's pause holds every worker as in production.
            retry=RetryPolicy(
                attempts=attempts, base_delay=0.002, max_delay=0.02, max_retry_after=0.02
            ),
            seed=SEED,
        )
        try:
            plan(fake, PROVISION_FAULTS)
            started = time.perf_counter()
            rows = await provision(conduit, ids)
            provisioned = time.perf_counter() - started
            provision_faults = dict(fake.stats.faults_injected)
            provision_retries = counter.retries
            assert provision_retries > 0  # the counter sees the session's retries

            # Every row answered once, and every failure is one of ours.
            assert sorted(cid for cid, _, _ in rows) == sorted(ids)
            failures = [(cid, err) for cid, outcome, err in rows if outcome == "failed"]
            for cid, err in failures:
                assert isinstance(err, ConduitError), (cid, repr(err))
            succeeded = {cid.lower() for cid, outcome, _ in rows if outcome != "failed"}

            # Each company exactly once, and exactly the successful rows.
            on_server = set(fake.companies)
            assert all(count == 1 for count in fake.stats.companies_created.values())
            assert set(fake.stats.companies_created) == on_server
            assert succeeded <= on_server
            unknown = {cid.lower() for cid, err in failures if isinstance(err, OutcomeUnknownError)}
            assert on_server - succeeded <= unknown, sorted(on_server - succeeded)[:10]

            # Use the companies' own tokens while they go stale and expire.
            fake.stats.faults_injected.clear()
            plan(fake, USE_FAULTS)
            counter.retries = 0
            started_use = time.perf_counter()
            used = await use_tokens(conduit, sorted(succeeded)[::USE_EVERY], clock)
            elapsed_use = time.perf_counter() - started_use
            use_failures = [e for e in used if e is not None]
            assert all(isinstance(e, ConduitError) for e in use_failures)
            assert fake.stats.expired_token_requests == 0, fake.stats.expired_token_log[:5]
            broker = conduit.tokens.stats
        finally:
            await conduit.close()
            fake.faults.clear()
    assert conduit.closed
    assert conduit._session.http is None or conduit._session.http.closed

    report.update(
        rows=size,
        concurrency=CONCURRENCY,
        fault_rate=RATE,
        clock_speed=SPEED,
        elapsed_provision_s=round(provisioned, 2),
        rows_per_s=round(size / provisioned),
        faults_injected_provision=dict(sorted(provision_faults.items())),
        retries_provision=provision_retries,
        outcomes=dict(collections.Counter(outcome for _, outcome, _ in rows)),
        failures=dict(collections.Counter(type(e).__name__ for _, e in failures)),
        companies_on_server=len(on_server),
        use_rounds=len(USE_ROUNDS),
        elapsed_use_s=round(elapsed_use, 2),
        faults_injected_use=dict(sorted(fake.stats.faults_injected.items())),
        retries_use=counter.retries,
        use_failures=dict(collections.Counter(type(e).__name__ for e in use_failures)),
        token_fetches=broker.company_fetches,
        background_refreshes=broker.background_refreshes,
        refresh_failures=broker.refresh_failures,
        expired_token_requests=fake.stats.expired_token_requests,
        requests_total=fake.stats.requests_total,
    )
    print("\nsoak:", report)


async def test_company_create_survives_faults(
    soak_size: int, soak_report: dict[str, Any], retry_counter: RetryCounter
) -> None:
    """The core SDK alone, no row-level retries to hide behind: `companies.create` must
    reconcile every lost create itself. Enough attempts that faults rarely exhaust them."""
    async with no_leftovers():
        await soak(create_each, soak_size, soak_report, retry_counter, attempts=8)


async def test_provision_survives_faults(
    soak_size: int, soak_report: dict[str, Any], retry_counter: RetryCounter
) -> None:
    """`companies.provision` with the default three attempts per request."""
    async with no_leftovers():
        await soak(provision_each, soak_size, soak_report, retry_counter, attempts=3)


# -- the CLI: SIGTERM midway, then --resume ---------------------------------------------------


@contextlib.contextmanager
def fake_server_process() -> Iterator[FakeServerInfo]:
    """The fake server in a subprocess, which must end cleanly (status 0) on SIGTERM."""
    launcher = FakeServerProcess()
    with launcher as server:
        yield server
    assert launcher.returncode == 0, f"the fake server ended with {launcher.returncode}"


def cli_env(server: FakeServerInfo) -> dict[str, str]:
    """The environment of a CLI run against `server`: tokens and URLs, warnings as errors."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    env.update(server.environment(), PYTHONWARNINGS="error")
    return env


#: A company token as the fake issues it: none may reach a results file or the terminal.
COMPANY_TOKEN = re.compile(r"ct_[0-9a-f]{32}")


def assert_no_token(text: str, server: FakeServerInfo) -> None:
    assert server.org_token not in text
    assert server.link_token not in text
    assert COMPANY_TOKEN.search(text) is None


def test_cli_resumes_after_sigterm_without_duplicates(
    tmp_path: Path, soak_size: int, soak_report: dict[str, Any]
) -> None:
    size = max(soak_size, 500)
    rows = tmp_path / "companies.csv"
    rows.write_text(
        "id,name,page_enabled\n"
        + "".join(f"cli{i},Client {i},{'true' if i % 2 else 'false'}\n" for i in range(size))
    )
    results = tmp_path / "r.jsonl"
    with fake_server_process() as server:
        env = cli_env(server)
        command = [sys.executable, "-m", "conduit_async", "provision", "companies", str(rows)]
        started = time.perf_counter()
        first = subprocess.Popen(
            [*command, "--out", str(results), "--concurrency", "4", "-q"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # SIGTERM once some rows are recorded, well before the end.
        while first.poll() is None:
            if results.exists() and results.read_text().count("\n") >= size // 20:
                first.send_signal(signal.SIGTERM)
                break
            time.sleep(0.002)
        out, err = first.communicate(timeout=60)
        first_elapsed = time.perf_counter() - started
        assert first.returncode == 130, (first.returncode, err)
        assert "--resume" in err
        before = results.read_text()
        recorded = before.count("\n")
        assert 0 < recorded < size, "the run ended before SIGTERM: raise --soak-size"
        assert before.endswith("\n")
        # A complete file: every line a whole result, each row at most once, none failed.
        first_lines = [json.loads(line) for line in before.splitlines()]
        assert all(line["outcome"] == "created" for line in first_lines)
        assert len({line["id"] for line in first_lines}) == recorded
        midway = server.fake_stats()

        started = time.perf_counter()
        second = subprocess.run(
            [*command, "--resume", str(results), "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        second_elapsed = time.perf_counter() - started
        assert second.returncode == 0, second.stderr
        stats = server.fake_stats()

    text = results.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    done = collections.Counter(line["id"] for line in lines if line["outcome"] != "failed")
    assert done == dict.fromkeys((f"cli{i}" for i in range(size)), 1)
    assert len(lines) == size  # resume skipped every recorded row: not one was redone
    assert stats["companies_created"] == dict.fromkeys((f"cli{i}" for i in range(size)), 1)
    # Rows in flight at SIGTERM finished and were recorded, so resume met no 409.
    assert stats["requests"]["POST /link/company/"].get("409", 0) == 0
    for output in (text, out, err, second.stdout, second.stderr):
        assert_no_token(output, server)

    soak_report.update(
        rows=size,
        recorded_before_sigterm=recorded,
        created_before_sigterm=len(midway["companies_created"]),
        first_run_s=round(first_elapsed, 2),
        resume_run_s=round(second_elapsed, 2),
        exit_codes=(first.returncode, second.returncode),
        outcomes=dict(collections.Counter(line["outcome"] for line in lines)),
        server_requests=stats["requests_total"],
    )
