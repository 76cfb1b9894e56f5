"""`Conduit.stats()`: counters a person can watch, and the CLI's `--verbose` summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conduit_async import Stats
from conduit_async.testing import FakeConduit, FakeServerProcess, Fault, ManualClock


async def test_stats_count_requests_retries_pauses_and_tokens() -> None:
    clock = ManualClock()
    async with FakeConduit(clock=clock) as fake:
        fake.add_company("beta2")
        async with fake.client() as conduit:
            await conduit.companies.create("acme1")
            fake.faults.script("GET /link/credentials/", [Fault.status(503)])
            await conduit.company("acme1").integrations()  # cache hit, one 503 retried
            fake.faults.script("GET /link/credentials/", [Fault.status(429, retry_after=3)])
            await conduit.company("beta2").integrations()  # a miss: one token fetch; a 429
            stats = conduit.stats()
    assert isinstance(stats, Stats)
    assert stats.requests["POST /link/company/"] == {"200": 1}
    assert stats.requests["GET /link/credentials/"] == {"503": 1, "429": 1, "200": 2}
    assert stats.requests["GET /link/company/{cid}/"] == {"200": 1}
    assert stats.requests_sent == 6
    assert stats.retries == {"503": 1, "rate_limit": 1}
    assert (stats.pauses, stats.paused_seconds) == (1, 3.0)
    assert stats.token_fetches == 1
    assert stats.cache_hits >= 1 and stats.cache_misses >= 1
    assert stats.fetches_in_flight == 0
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["requests_sent"] == 6


def test_verbose_prints_the_counters_after_a_bulk_run(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id,name\nacme1,Acme\nbeta2,Beta\n")
    with FakeServerProcess() as server:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "conduit_async", "provision", "companies"),
                *(str(rows), "--verbose", "--json"),
            ],
            env={**server.environment(), "PATH": ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    stats = next(line["stats"] for line in lines if "stats" in line)
    assert stats["requests"]["POST /link/company/"] == {"200": 2}
    for token in (server.org_token, server.link_token):
        assert token not in done.stdout and token not in done.stderr


async def test_a_cache_miss_is_counted_once_and_a_hit_once() -> None:
    async with FakeConduit(clock=ManualClock()) as fake:
        fake.add_company("acme1")
        async with fake.client() as conduit:
            await conduit.company("acme1").integrations()  # a miss, then one fetch
            after_miss = conduit.stats()
            await conduit.company("acme1").integrations()  # a hit
            assert await conduit.companies.token("ACME1")  # a hit
            stats = conduit.stats()
    assert (after_miss.cache_misses, after_miss.cache_hits) == (1, 0)
    assert (stats.cache_misses, stats.cache_hits, stats.token_fetches) == (1, 2, 1)
