"""How big each benchmark is: the full run (for people) and the quick one (for CI)."""

from __future__ import annotations

import attrs

__all__ = ["FULL", "QUICK", "Sizes"]


@attrs.frozen
class Sizes:
    name: str
    #: Bulk create: companies per contender per round, rounds (A B C A B C ...), workers.
    bulk_companies: int
    bulk_rounds: int
    bulk_concurrency: int
    #: ... companies per round for the httpx contenders (several times costlier per request).
    bulk_httpx_companies: int
    #: Per-call overhead: companies called round-robin, calls per contender per round
    #: at each concurrency, rounds (SDK and raw alternate).
    overhead_companies: int
    overhead_calls: int
    overhead_rounds: int
    overhead_concurrencies: tuple[int, ...]
    #: Client CPU per request: requests per contender per turn, rounds (alternating).
    cpu_calls: int
    cpu_rounds: int
    #: Instructions per request under callgrind: `n` (the runs make n and 3n requests).
    instructions_count: int
    #: Runs of each contender under callgrind; its median counts.
    instructions_repeats: int
    #: Interactive calls with 1 % 429s: seconds per variant, handlers, companies.
    interactive_seconds: float
    interactive_concurrency: int
    interactive_companies: int
    #: Token broker: cache-hit calls per timed repeat, repeats; companies in the cold fill.
    hit_calls: int
    hit_repeats: int
    cold_fill: int
    #: Across expiry: token lifetime on the server, seconds of traffic per run, rounds
    #: (expiring and never-expiring runs alternate A B, B A, ...), companies, workers.
    expiry_ttl: float
    expiry_seconds: float
    expiry_rounds: int
    expiry_companies: int
    expiry_concurrency: int
    #: Memory: rows streamed through provision; tokens cached for the per-token figure.
    memory_rows: int
    memory_tokens: int


FULL = Sizes(
    name="full",
    bulk_companies=10_000,
    bulk_rounds=5,
    bulk_concurrency=64,
    bulk_httpx_companies=500,
    overhead_companies=64,
    overhead_calls=2_000,
    overhead_rounds=8,
    overhead_concurrencies=(1, 64),
    cpu_calls=300,
    cpu_rounds=21,
    instructions_count=200,
    instructions_repeats=5,  # a POST moves about 1 % from run to run: the median of 5
    interactive_seconds=8.0,
    interactive_concurrency=32,
    interactive_companies=200,
    hit_calls=200_000,
    hit_repeats=7,
    cold_fill=10_000,
    expiry_ttl=6.0,
    expiry_seconds=30.0,
    expiry_rounds=2,
    expiry_companies=200,
    expiry_concurrency=32,
    memory_rows=200_000,
    memory_tokens=100_000,
)

QUICK = Sizes(
    name="quick",
    bulk_companies=1_000,
    bulk_rounds=2,
    bulk_concurrency=64,
    bulk_httpx_companies=300,
    overhead_companies=64,
    overhead_calls=500,
    overhead_rounds=2,
    overhead_concurrencies=(1, 64),
    cpu_calls=100,
    cpu_rounds=3,
    instructions_count=100,
    instructions_repeats=1,
    interactive_seconds=3.0,
    interactive_concurrency=32,
    interactive_companies=100,
    hit_calls=200_000,
    hit_repeats=3,
    cold_fill=1_000,
    expiry_ttl=2.0,
    expiry_seconds=6.0,
    expiry_rounds=1,
    expiry_companies=200,
    expiry_concurrency=32,
    memory_rows=20_000,
    memory_tokens=10_000,
)
