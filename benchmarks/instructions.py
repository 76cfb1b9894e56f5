"""Client instructions per request under callgrind: SDK versus hand-written aiohttp.

Wall and CPU time on a shared machine move by tens of percent from one minute to the
next; instruction counts do not. Each contender's client runs in a child process under
``valgrind --tool=callgrind`` against the fake server, which runs natively in its own
process. Each contender makes `n`, then `3n` requests; what is not per request cancels
in the difference, so

    instructions per request = (I(3n) - I(n)) / (2n)

Each contender runs in one child: interpreter start-up and imports run uninstrumented
(``--instr-atstart=no``), then the child turns counting on, sets up and warms up, and
marks the phases with a call that makes callgrind dump its counts (``--dump-before``):
the differencing then cancels what each phase costs once (starting and ending it). The
contenders and pairs are in `benchmarks.contenders`.

``python -m benchmarks instructions`` runs only this. The child side is
``python -m benchmarks.instructions CONTENDER COUNT PREFIX`` (the server and its tokens
come from ``CONDUIT_BENCH_*`` environment variables, never the command line).
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .bulk import company_ids
from .contenders import CONTENDERS, PAIRS, PROVISION_CONCURRENCY, Contender, Pair, names
from .server import ServerInfo
from .stats import median

__all__ = [
    "callgrind_available",
    "callgrind_run",
    "main",
    "run_instructions",
    "total_instructions",
]

ROOT = Path(__file__).resolve().parent.parent
VALGRIND = "valgrind"
_UNDER_CALLGRIND = "CONDUIT_BENCH_UNDER_CALLGRIND"
_ENV = {
    "url": "CONDUIT_BENCH_URL",
    "base_url": "CONDUIT_BENCH_BASE_URL",
    "link_base_url": "CONDUIT_BENCH_LINK_BASE_URL",
    "org_token": "CONDUIT_BENCH_ORG_TOKEN",
    "link_token": "CONDUIT_BENCH_LINK_TOKEN",
}


# -- the child: one contender, phases of requests --------------------------------------

#: Requests before the first measured phase: connections, caches, lazy imports. Twice
#: the provision pair's concurrency, so that every connection its 64 workers use is open
#: before counting starts: a connection opened in the first phase but not the second
#: would be subtracted from every request's count (it was, with a warm-up of 20).
WARMUP = 2 * PROVISION_CONCURRENCY


def _mark() -> None:
    """The boundary between phases: callgrind runs with ``--dump-before=getppid``, so
    this call writes the counts so far to a file of their own and zeroes them."""
    os.getppid()


def _instrument() -> None:
    """Under callgrind, start counting now: the interpreter's start-up and the imports
    ran uninstrumented (``--instr-atstart=no``), several times faster."""
    if os.environ.get(_UNDER_CALLGRIND) != "1":
        return
    done = subprocess.run(
        ["callgrind_control", "--instr=on", str(os.getpid())],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control failed: {done.stdout}{done.stderr}")


async def _child(contender: Contender, count: int, prefix: str) -> None:
    info = _info_from_env()
    async with contender(info) as phase:
        _instrument()
        await phase(company_ids(prefix + "W", WARMUP))
        # Each phase starts from a collected heap: a collection left pending by what ran
        # before then lands in neither, and the collections each phase pays are its own
        # (the differencing keeps them: they are part of the cost). The collections made
        # here are counted in parts of their own, discarded.
        gc.collect()
        _mark()  # part 1: set-up, warm-up and a collection, discarded
        await phase(company_ids(prefix + "A", count))
        _mark()  # part 2: `count` requests
        gc.collect()
        _mark()  # part 3: a collection, discarded
        await phase(company_ids(prefix + "B", 3 * count))
        _mark()  # part 4: `3 * count` requests


def _info_from_env() -> ServerInfo:
    values = {field: os.environ[var] for field, var in _ENV.items()}
    return ServerInfo(**values, token_ttl=600.0, pid=0)


def main(argv: Sequence[str] | None = None) -> int:
    """The child: one contender's phases of `COUNT` and `3 * COUNT` requests."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] not in CONTENDERS or not args[1].isdigit():
        print(
            f"usage: python -m benchmarks.instructions {{{','.join(CONTENDERS)}}} COUNT PREFIX",
            file=sys.stderr,
        )
        return 2
    asyncio.run(_child(CONTENDERS[args[0]], int(args[1]), args[2]))
    return 0


# -- the parent: callgrind runs and their arithmetic ----------------------------------


def callgrind_available() -> str | None:
    """Why callgrind cannot run here, or None when it can."""
    for program in (VALGRIND, "callgrind_control"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install valgrind)"
    return None


def callgrind_run(
    info: ServerInfo,
    contender: str,
    count: int,
    prefix: str,
    out: Path,
    *,
    python: str = sys.executable,
    python_args: Sequence[str] = (),
    valgrind_args: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Run one contender's child under callgrind; returns the callgrind.out files of
    its two measured phases (`count` and `3 * count` requests)."""
    env = {
        **os.environ,
        **{var: str(getattr(info, field)) for field, var in _ENV.items()},
        _UNDER_CALLGRIND: "1",
        # The same hash seed in every run: dict and set layouts, and so their costs, repeat.
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    cmd = [
        VALGRIND,
        "--tool=callgrind",
        "--instr-atstart=no",
        "--collect-atstart=yes",
        "--dump-before=getppid",
        f"--callgrind-out-file={out}",
        *valgrind_args,
        python,
        *python_args,
        "-m",
        "benchmarks.instructions",
        contender,
        str(count),
        prefix,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{contender} x{count} under callgrind exited {done.returncode}:\n"
            + done.stderr[-3000:]
        )
    parts = sorted(out.parent.glob(out.name + ".*"), key=lambda p: int(p.suffix[1:]))
    if len(parts) != 4:
        raise RuntimeError(f"{contender}: expected 4 callgrind dumps, found {len(parts)}")
    return parts[1], parts[3]


def total_instructions(callgrind_out: Path) -> int:
    """The instruction count of one callgrind.out file (its ``totals:`` or ``summary:``)."""
    found: int | None = None
    with callgrind_out.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("totals:"):
                return int(line.split()[1])
            if line.startswith("summary:"):
                found = int(line.split()[1])
    if found is None:
        raise ValueError(f"{callgrind_out}: no totals or summary line")
    return found


def run_instructions(
    info: ServerInfo,
    *,
    count: int,
    pairs: Sequence[Pair] = PAIRS,
    jobs: int = 2,
    repeats: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Instructions per request of every contender, and each pair's SDK / raw ratio.

    Each contender runs in one child, `jobs` children at a time (instruction counts do
    not depend on how busy the machine is). They do depend a little on timing: how a
    response arrives (one read or two, before or after the client waits for it) moves
    a POST's count by about 1 % run to run, so each contender runs `repeats` times and
    its median counts.
    """
    contenders = names(pairs)
    runs: dict[str, list[tuple[int, int]]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="conduit-callgrind-") as tmp:

        def one(index: int, repeat: int) -> None:
            name = contenders[index]
            out = Path(tmp) / f"callgrind.out.{index}.{repeat}"
            # Ids of the same length in every run, fresh in each (the server outlives them).
            prefix = f"I{os.getpid()}R{index}X{repeat}"
            small, large = callgrind_run(info, name, count, prefix, out)
            runs[name].append((total_instructions(small), total_instructions(large)))
            per = (runs[name][-1][1] - runs[name][-1][0]) / (2 * count)
            log(f"  instructions {name:17} {per:>10,.0f} per request")

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            work = [(i, r) for r in range(max(1, repeats)) for i in range(len(contenders))]
            for future in [pool.submit(one, i, r) for i, r in work]:
                future.result()
    per_run = {
        name: [(large - small) / (2 * count) for small, large in runs[name]] for name in contenders
    }
    per_request = {name: median(values) for name, values in per_run.items()}
    phases = {name: runs[name][0] for name in contenders}
    result: dict[str, Any] = {
        "counts": [count, 3 * count],
        "repeats": max(1, repeats),
        "per_run": per_run,
        "phase_totals": {name: list(phases[name]) for name in contenders},
        "per_request": per_request,
        "pairs": {},
    }
    for pair in pairs:
        entry: dict[str, Any] = {
            "sdk": pair.sdk,
            "raw": pair.raw,
            "ratio": per_request[pair.sdk] / per_request[pair.raw],
            "target": pair.target,
        }
        for ref in pair.references:
            entry[f"ratio_vs_{ref}"] = per_request[pair.sdk] / per_request[ref]
        entry["met"] = None if pair.target is None else entry["ratio"] <= pair.target
        result["pairs"][pair.name] = entry
    return result


if __name__ == "__main__":
    sys.exit(main())
