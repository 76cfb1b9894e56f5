"""Client CPU per request, SDK versus hand-written aiohttp, measured with ``process_time``.

The contenders of `benchmarks.contenders` run in this process (the fake server in its
own), each set up once. Then, round after round, each pair's contenders take turns
(SDK, raw, SDK, raw, ...; the order flips every round) making `calls` requests, and
``time.process_time()`` around each turn gives the client CPU per request. Many short
rounds, alternating, spread a busy machine's slow moments over both contenders alike;
the result gives the median per contender, the spread (lowest and highest round), and
the median of the per-round SDK / raw ratios.

Instruction counts (`benchmarks.instructions`) are the repeatable measure the targets
are judged on; this is the same comparison in time, as a user feels it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from .bulk import company_ids
from .contenders import CONTENDERS, PAIRS, Pair, Phase, names
from .server import ServerInfo
from .stats import median

__all__ = ["run_cpu"]


async def run_cpu(
    info: ServerInfo,
    *,
    calls: int,
    rounds: int,
    pairs: Sequence[Pair] = PAIRS,
    warmup: int = 50,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Per contender, client CPU µs per request in every round; per pair, the ratios."""
    contenders = names(pairs)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    async with AsyncExitStack() as stack:
        phases: dict[str, Phase] = {}
        for n, name in enumerate(contenders):
            phases[name] = await stack.enter_async_context(CONTENDERS[name](info))
            await phases[name](company_ids(f"C{n:02d}W", warmup))
        for round_no in range(1, rounds + 1):
            for pair in pairs:
                turn = [pair.sdk, pair.raw, *pair.references]
                if round_no % 2 == 0:
                    turn.reverse()
                for name in turn:
                    ids = company_ids(f"C{contenders.index(name):02d}R{round_no:03d}", calls)
                    started = time.process_time()
                    await phases[name](ids)
                    samples[name].append((time.process_time() - started) / calls * 1e6)
            if round_no % 5 == 0 or round_no == rounds:
                log(f"  cpu round {round_no}/{rounds}")
    result: dict[str, Any] = {"calls_per_round": calls, "rounds": rounds, "contenders": {}}
    for name, values in samples.items():
        result["contenders"][name] = {
            "median_us": median(values),
            "min_us": min(values),
            "max_us": max(values),
            "rounds_us": values,
        }
    result["pairs"] = {}
    for pair in pairs:
        per_round = [s / r for s, r in zip(samples[pair.sdk], samples[pair.raw], strict=True)]
        entry: dict[str, Any] = {
            "ratio_of_medians": median(samples[pair.sdk]) / median(samples[pair.raw]),
            "median_of_round_ratios": median(per_round),
            "round_ratio_min": min(per_round),
            "round_ratio_max": max(per_round),
        }
        for ref in pair.references:
            entry[f"ratio_of_medians_vs_{ref}"] = median(samples[pair.sdk]) / median(samples[ref])
        result["pairs"][pair.name] = entry
    return result
