"""The benchmark harness itself: the raw baseline sends what the SDK sends, callgrind
files are read right, and a quick run never replaces the committed full results."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as bench_main  # noqa: E402
from benchmarks import allocator  # noqa: E402
from benchmarks.bulk import company_ids, timed  # noqa: E402
from benchmarks.callgrind import function_costs, short_name  # noqa: E402
from benchmarks.contenders import CONTENDERS, PAIRS  # noqa: E402
from benchmarks.instructions import total_instructions  # noqa: E402
from benchmarks.overhead import CREATE_CONCURRENCY, idle_connections, prepared  # noqa: E402
from benchmarks.raw import create_one, raw_session  # noqa: E402
from benchmarks.scaleout import median_of_rounds  # noqa: E402
from conduit_async import Conduit  # noqa: E402
from conduit_async.testing import FakeConduit, FakeServerInfo  # noqa: E402

LINK_TOKEN = "link_secret_for_test"


async def _recording_server(seen: list[tuple[dict[str, str], bytes]]) -> web.AppRunner:
    """A Link API stand-in that records each create's headers and body."""

    async def create(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((dict(request.headers), body))
        cid = json.loads(body)["id"]
        return web.json_response(
            {
                "id": cid,
                "name": f"Company {cid}",
                "created_at": "2023-03-15T12:34:56Z",
                "link_page": {"url": None, "enabled": False},
                "api_token": {"token": "ct_" + cid, "expires_at": int(time.time()) + 600},
            }
        )

    app = web.Application()
    app.router.add_post("/link/company/", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


# Headers aiohttp computes from the connection or the body, not chosen by the caller.
_TRANSPORT = {"Host", "Content-Length", "Accept-Encoding", "Connection"}


async def test_raw_create_sends_what_the_sdk_sends() -> None:
    seen: list[tuple[dict[str, str], bytes]] = []
    runner = await _recording_server(seen)
    try:
        port = runner.addresses[0][1]
        link = f"http://127.0.0.1:{port}/link/"
        async with Conduit("org_unused", LINK_TOKEN, link_base_url=link) as conduit:
            await conduit.companies.create("ACME1", name="Company ACME1")
        async with raw_session(8, LINK_TOKEN) as http:
            assert await create_one(http, link + "company/", "ACME1")
    finally:
        await runner.cleanup()
    (sdk_headers, sdk_body), (raw_headers, raw_body) = seen

    def chosen(headers: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k not in _TRANSPORT}

    assert chosen(raw_headers) == chosen(sdk_headers)
    assert raw_headers["Authorization"] == f"Bearer {LINK_TOKEN}"
    assert raw_body == sdk_body


async def test_the_overhead_benchmarks_pools_hold_the_same_connections(
    conduit_fake: FakeConduit,
) -> None:
    # aiohttp rotates calls made one at a time over every idle connection: a pool of 32
    # against a pool of one would charge the SDK for the difference.
    ids = company_ids("POOL", 40)
    async with prepared(conduit_fake, ids) as (_, pools, contenders):  # type: ignore[arg-type]
        held = {name: idle_connections(http) for name, http in pools.items()}
        assert await contenders["sdk"](ids[0]) == await contenders["aiohttp"](ids[0])
    assert held == {"sdk": CREATE_CONCURRENCY, "aiohttp": CREATE_CONCURRENCY}


async def test_a_bulk_run_counts_the_page_faults_and_the_cpu_of_its_contender() -> None:
    pages = 1024

    async def touching(info: FakeServerInfo, ids: list[str], concurrency: int) -> int:
        # Fresh anonymous pages: the first write to each is a page fault.
        with mmap.mmap(-1, pages * mmap.PAGESIZE) as memory:
            for page in range(pages):
                memory[page * mmap.PAGESIZE] = 1
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass
        return 1

    info = FakeServerInfo("http://x/", "http://x/v2/", "http://x/link/", "o", "l", 600, os.getpid())
    run = await timed(touching, info, "touching", 1, ["a", "b"], 1)
    assert run.page_faults >= pages
    assert run.faults_per_company >= pages / 2
    assert run.user_seconds + run.system_seconds >= 0.02
    assert run.failed == 1
    assert {"system_us_per_company", "faults_per_company", "user_seconds"} <= run.as_dict().keys()


def test_every_pair_names_contenders_that_exist() -> None:
    for pair in PAIRS:
        assert {pair.sdk, pair.raw, *pair.references} <= CONTENDERS.keys(), pair
        assert pair.target is None or pair.target >= 1.0, pair


def test_function_costs_reads_self_inclusive_names_and_trampolines(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text(
        "# callgrind format\n"
        "version: 1\n"
        "pid: 42\n"
        "events: Ir\n"
        "summary: 175\n"
        "\n"
        "fl=(1) /src/a.c\n"
        "fn=(1) main\n"
        "10 5\n"
        "cfn=(2) 0x0000000000001000\n"
        "calls=1 20\n"
        "11 120\n"
        "+1 5\n"
        "cfn=(3) helper'2\n"
        "calls=2 30\n"
        "* 40\n"
        "\n"
        "fn=(2)\n"
        "20 100\n"
        "cfn=(3)\n"
        "calls=1 30\n"
        "21 20\n"
        "\n"
        "fn=(3)\n"
        "30 60\n"
        "totals: 175\n",
        encoding="utf-8",
    )
    costs = function_costs(out, {0x1000: "Session.request:/repo/conduit_async/_session.py"})
    assert costs["main"] == (10, 170)
    assert costs["Session.request:/repo/conduit_async/_session.py"] == (100, 120)
    assert costs["helper"] == (60, 60)  # helper'2 (a recursion level) is helper
    assert total_instructions(out) == 175
    name = short_name("Session.request:/repo/conduit_async/_session.py", ("/repo",))
    assert name == "Session.request (conduit_async/_session.py)"


def test_total_instructions_refuses_a_file_without_counts(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("# callgrind format\nevents: Ir\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no totals"):
        total_instructions(out)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], bench_main.FULL_OUT),
        (["--quick"], bench_main.QUICK_OUT),
        (["instructions"], bench_main.QUICK_OUT),
        (["--only", "bulk", "overhead"], bench_main.QUICK_OUT),
        (["--quick", "--out", "/tmp/x.json"], Path("/tmp/x.json")),
    ],
)
def test_only_a_full_run_of_everything_writes_the_committed_results(
    argv: list[str], expected: Path
) -> None:
    assert bench_main.plan(argv)[2] == expected


def test_settling_the_allocator_fixes_the_thresholds_of_processes_started_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")  # one the user set is kept
    allocator.settle()
    names = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    show = f"import os; print(*(os.environ[name] for name in {names!r}))"
    child = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, check=True)
    # Above asyncio's 256 KiB read buffer, so no read is served by mmap.
    assert child.stdout.split() == [str(1 << 20), "12345"]
    assert int(child.stdout.split()[0]) > 256 * 1024


def test_unknown_benchmark_names_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_main.plan(["bulky"])
    assert "unknown benchmark bulky" in capsys.readouterr().err


def test_scaleout_reports_the_median_of_the_rounds_p99_ratios_and_that_rounds_figures() -> None:
    def pair(n: int, ratio: float) -> dict[str, object]:
        return {"b": f"b{n}", "c": f"c{n}", "c_p99_vs_b": ratio, "c_warm_p99_vs_b": ratio / 2}

    rounds = [pair(1, 1.6), pair(2, 1.1), pair(3, 1.3)]
    result = median_of_rounds(rounds)
    assert result["c_p99_vs_b_rounds"] == [1.6, 1.1, 1.3]
    assert result["c_p99_vs_b"] == 1.3 and result["c_warm_p99_vs_b"] == 0.65
    assert (result["b"], result["c"]) == ("b3", "c3")  # the median round's own figures
    skipped = median_of_rounds([{"b": "b1", "c": {"skipped": "no redis-server"}}])
    assert "c_p99_vs_b" not in skipped and skipped["c"] == {"skipped": "no redis-server"}


def test_scaleout_rounds_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.scaleout import main

    with pytest.raises(SystemExit):
        main(["--rounds", "0"])
    assert "at least 1" in capsys.readouterr().err
