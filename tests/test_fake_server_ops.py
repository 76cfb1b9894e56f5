"""The fake server for an operator and for other processes: the launcher, the command's
options (--env, --faults, --revoke-on-reissue), the virtual-clock control route, the
read-only token accessor, and the rules announcing events that only the server counts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_fake_server import START, call, create_company

from conduit_async import RetryPolicy
from conduit_async.testing import (
    FAULT_MIX,
    FakeConduit,
    FakeServerProcess,
    FakeStats,
    Grant,
    ManualClock,
    TokenKind,
)
from conduit_async.testing.__main__ import main, serve
from conduit_async.testing._events import (
    CompanyCreated,
    DashboardCloned,
    Event,
    TokenIssued,
    TokenRevoked,
    WorkspaceCreated,
)
from conduit_async.testing._state import FakeState


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def fake_server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "conduit_async", "fake-server", *args]


# -- rules announce events, the server counts them ------------------------------------------


def test_the_rules_announce_events_and_know_nothing_of_stats() -> None:
    events: list[Event] = []
    state = FakeState(token_ttl=600, org_token="org_a", link_token="link_a", on_event=events.append)
    state.add_company("seeded1", None, True, START)  # a helper: not something a client did
    state.add_workspace("seeded", None)
    assert events == []

    state.create_company({"id": "Acme1"}, START)
    state.get_company("acme1", START)
    workspace = state.create_workspace({"name": "W", "ext_id": "e1"})
    clone = state.clone_dashboard(1, {"workspace": workspace["id"]})
    assert events == [
        CompanyCreated("acme1"),
        TokenIssued("acme1"),
        TokenIssued("acme1"),
        WorkspaceCreated("e1"),
        DashboardCloned(clone["id"]),
    ]

    events.clear()
    state.revoke_on_reissue = True
    state.list_companies(False, START)  # one token for each of the two companies
    assert events == [TokenIssued("seeded1"), TokenIssued("acme1"), TokenRevoked("acme1")]


def test_stats_count_each_kind_of_event() -> None:
    stats = FakeStats()
    for event in [
        TokenIssued("a"),
        TokenIssued("a"),
        TokenRevoked("a"),
        CompanyCreated("a"),
        WorkspaceCreated("e1"),
        WorkspaceCreated(None),
        DashboardCloned(9),
    ]:
        stats.record_event(event)
    assert stats.tokens_issued == {"a": 2}
    assert stats.tokens_revoked_on_reissue == {"a": 1}
    assert stats.companies_created == {"a": 1}
    assert stats.workspaces_created == 2
    assert stats.workspaces_created_by_ext_id == {"e1": 1}
    assert stats.dashboards_cloned == 1


# -- the read-only token accessor ------------------------------------------------------------


async def test_issued_tokens_is_a_live_read_only_view(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with FakeConduit(clock=clock, token_ttl=30) as fake:
        tokens = fake.issued_tokens()
        assert tokens[fake.org_token] == Grant(TokenKind.ORGANIZATION, None, None)
        assert tokens[fake.link_token] == Grant(TokenKind.LINK, None, None)
        workspace = fake.add_workspace("W")
        company = (await create_company(http, fake, "Acme1")).body["api_token"]
        assert tokens[workspace.token] == Grant(TokenKind.WORKSPACE, workspace.id, None)
        assert tokens[company["token"]] == Grant(TokenKind.COMPANY, "acme1", START + 30)
        with pytest.raises(TypeError):
            tokens["x"] = tokens[fake.org_token]  # type: ignore[index]

        clock.advance(60)  # an expired token is still known (and refused as expired)
        assert company["token"] in fake.issued_tokens()
        fake.revoke_token(company["token"])
        assert company["token"] not in tokens


# -- expires_at: whole seconds ---------------------------------------------------------------


async def test_expires_at_is_a_whole_second_whatever_the_clock(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with FakeConduit(clock=clock, token_ttl=600) as fake:
        for step in (0.1, 0.5, 0.999, 1.25, 7.75):
            clock.advance(step)
            sent = (await call(http, "GET", fake.link_base_url + "company/", fake.link_token)).body
            reply = await create_company(http, fake, f"c{len(fake.companies)}")
            for api_token in [reply.body["api_token"]] + [c["api_token"] for c in sent]:
                assert isinstance(api_token["expires_at"], int)
                assert api_token["expires_at"] == math.floor(fake.now() + 600)
        assert fake.issue_company_token("c0").expires_at == math.floor(fake.now() + 600)


@pytest.mark.parametrize("offset", [0.7, -0.3])
async def test_the_sdk_never_sends_an_expired_token_with_truncated_expiry(
    clock: ManualClock, offset: float
) -> None:
    """A fractional server clock (so Date headers up to a second behind) with
    whole-second expiry: the SDK refreshes in time, whichever way the server's clock is
    off."""
    clock.set(START + 0.9)
    async with FakeConduit(clock=clock, token_ttl=60, clock_offset=offset) as fake:
        async with fake.client(
            clock=clock,
            retry=RetryPolicy(sleep=clock.sleep),
            seed=3,
        ) as conduit:
            await conduit.companies.create("acme1")
            for _ in range(300):
                clock.advance(0.35)
                await conduit.company("acme1").integrations()
        assert fake.stats.expired_token_requests == 0
        assert fake.stats.tokens_issued["acme1"] > 2


# -- the virtual clock from outside ----------------------------------------------------------


async def test_clock_route_reads_and_advances_server_time(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with FakeConduit(clock=clock, token_ttl=600) as fake:
        token = (await create_company(http, fake, "acme1")).body["api_token"]["token"]
        read = await call(http, "GET", fake.url + "_fake/clock")
        assert (read.status, read.body) == (200, {"now": START, "offset": 0.0})

        moved = await call(http, "POST", fake.url + "_fake/clock", None, {"advance": 660})
        assert (moved.status, moved.body) == (200, {"now": START + 660, "offset": 660.0})
        assert fake.clock_offset == 660 and fake.now() == START + 660
        assert moved.date == START + 660  # the Date header tells clients in other processes

        refused = await call(http, "GET", fake.link_base_url + "credentials/", token)
        assert (refused.status, refused.code) == (401, "token_expired")
        await call(http, "POST", fake.url + "_fake/clock", None, {"advance": 0.5})
        assert (await call(http, "GET", fake.url + "_fake/clock")).body["now"] == START + 660.5
        assert fake.stats.requests_total == 2  # control routes are not API requests


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid JSON"),
        (b"{advance: 1}", "not valid JSON"),
        (b"[660]", "JSON object"),
        (b"{}", "'advance' is required"),
        (b'{"advance": "660"}', "number of seconds"),
        (b'{"advance": true}', "number of seconds"),
        (b'{"advance": null}', "'advance' is required"),
        (b'{"advance": -1}', "non-negative"),
        (b'{"advance": NaN}', "non-negative"),
        (b'{"advance": Infinity}', "non-negative"),
        (b'{"advance": 1' + b"0" * 400 + b"}", "non-negative"),
        (b'{"advance": 253402300799}', "year 9999"),
        (b'{"advance": 1, "set": 5}', "unknown field 'set'"),
    ],
)
async def test_clock_route_refuses_bad_bodies(
    clock: ManualClock, http: aiohttp.ClientSession, data: bytes, message: str
) -> None:
    async with FakeConduit(clock=clock) as fake:
        reply = await call(http, "POST", fake.url + "_fake/clock", data=data)
        assert reply.status == 400, reply.body
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.code in ("invalid_request", "invalid_json")
        assert message in reply.body["message"]
        assert fake.clock_offset == 0.0


# -- revoke on reissue -------------------------------------------------------------------------


async def test_revoke_on_reissue_refuses_earlier_tokens(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with FakeConduit(clock=clock, revoke_on_reissue=True) as fake:
        link, credentials = fake.link_base_url, fake.link_base_url + "credentials/"
        created = (await create_company(http, fake, "Acme1")).body["api_token"]["token"]
        got = (await call(http, "GET", link + "company/acme1/", fake.link_token)).body
        refused = await call(http, "GET", credentials, created)
        assert (refused.status, refused.code) == (401, "token_revoked")
        assert (await call(http, "GET", credentials, got["api_token"]["token"])).status == 200

        edited = await call(
            http, "POST", link + "company/ACME1/", fake.link_token, {"name": "Acme"}
        )
        listed = (await call(http, "GET", link + "company/", fake.link_token)).body
        helper = fake.issue_company_token("acme1")
        for earlier in (got["api_token"]["token"], edited.body["api_token"]["token"]):
            assert (await call(http, "GET", credentials, earlier)).code == "token_revoked"
        assert (await call(http, "GET", credentials, listed[0]["api_token"]["token"])).status == 401
        assert (await call(http, "GET", credentials, helper.token)).status == 200

        assert fake.stats.tokens_issued == {"acme1": 5}
        assert fake.stats.tokens_revoked_on_reissue == {"acme1": 4}
        assert fake.stats.revoked_token_requests == 4
        assert fake.stats.to_json()["tokens_revoked_on_reissue"] == {"acme1": 4}
        assert [t for t, g in fake.issued_tokens().items() if g.kind is TokenKind.COMPANY] == [
            helper.token
        ]


async def test_without_revoke_on_reissue_every_token_works_until_it_expires(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with FakeConduit(clock=clock) as fake:
        assert fake.revoke_on_reissue is False
        first = (await create_company(http, fake, "acme1")).body["api_token"]["token"]
        second = fake.issue_company_token("acme1")
        for token in (first, second.token):
            assert (
                await call(http, "GET", fake.link_base_url + "credentials/", token)
            ).status == 200
        fake.revoke_on_reissue = True  # switched on later, it applies to the next issue
        third = fake.issue_company_token("acme1")
        assert (
            await call(http, "GET", fake.link_base_url + "credentials/", second.token)
        ).status == 401
        assert (await call(http, "GET", fake.link_base_url + "credentials/", first)).status == 200
        assert (
            await call(http, "GET", fake.link_base_url + "credentials/", third.token)
        ).status == 200
        assert fake.stats.tokens_revoked_on_reissue == {"acme1": 1}


async def test_the_sdk_recovers_when_a_reissue_revokes_its_cached_token(
    clock: ManualClock,
) -> None:
    async with FakeConduit(clock=clock, revoke_on_reissue=True) as fake:
        async with fake.client(
            clock=clock,
            retry=RetryPolicy(sleep=clock.sleep),
        ) as conduit:
            await conduit.companies.create("acme1")
            fake.issue_company_token("acme1")  # another process fetched one: ours is dead
            await conduit.company("acme1").integrations()
        assert fake.stats.revoked_token_requests == 1
        assert fake.stats.count("GET /link/credentials/", 200) == 1


# -- random faults: --faults RATE ------------------------------------------------------------


async def test_fault_rate_draws_the_seeded_mix_on_every_route(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async def run(seed: int) -> tuple[dict[str, int], list[int]]:
        async with FakeConduit(clock=clock, seed=seed, fault_rate=0.5) as fake:
            statuses = []
            for _ in range(120):
                # A POST: aiohttp quietly sends an idempotent request again when its
                # connection drops, which would hide a reset from this count.
                try:
                    reply = await call(
                        http, "POST", fake.base_url + "workspaces/", fake.org_token, {"name": "W"}
                    )
                    statuses.append(reply.status)
                except aiohttp.ClientError:
                    statuses.append(0)
            assert fake.stats.requests_total == 120
            return dict(fake.stats.faults_injected), statuses

    injected, statuses = await run(seed=7)
    labels = {fault.label for fault, _ in FAULT_MIX}
    assert set(injected) == labels  # every kind of the mix shows up
    assert 30 <= sum(injected.values()) <= 90  # about half of 120
    assert injected["lost"] + injected["reset"] == statuses.count(0)
    assert statuses.count(429) == injected["status_429"]
    assert (await run(seed=7)) == (injected, statuses)  # the same seed, the same faults
    assert (await run(seed=8))[1] != statuses

    async with FakeConduit(clock=clock, fault_rate=1.0) as fake:
        with contextlib.suppress(aiohttp.ClientError):
            await call(http, "POST", fake.link_base_url + "company/", fake.link_token, {})
        assert sum(fake.stats.faults_injected.values()) == 1  # any route, not only one
    with pytest.raises(ValueError):
        FakeConduit(fault_rate=1.5)


# -- the command: usage, --env, options --------------------------------------------------------


def test_usage_and_errors_name_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: conduit-async fake-server")
    for option in ("--env", "--faults RATE", "--revoke-on-reissue", "/_fake/clock"):
        assert option in help_text
    for bad in (["--faults", "1.5"], ["--faults", "x"], ["--token-ttl", "nan"]):
        with pytest.raises(SystemExit) as exit:
            main(bad)
        assert exit.value.code == 2
        assert "conduit-async fake-server: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--json", "--env"])
    assert "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--org-token", "same", "--link-token", "same"])
    assert "must differ" in capsys.readouterr().err


def test_the_cli_subcommand_passes_every_option_through() -> None:
    run = subprocess.run(
        fake_server_command("--faults", "2"), capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.startswith("usage: conduit-async fake-server")
    assert "argument --faults: must be from 0 to 1" in run.stderr


async def test_env_lines_are_shell_quoted_exports() -> None:
    out = io.StringIO()
    stop = asyncio.Event()  # set as soon as the lines are out: serve() then returns
    await serve(
        port=0, announce="env", org_token="org_it's $HOME", out=out, announced=stop.set, stop=stop
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(line.startswith("export CONDUIT_") for line in lines)
    exports = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert exports["CONDUIT_TOKEN"] == "org_it's $HOME"
    assert exports["CONDUIT_LINK_TOKEN"].startswith("link_")
    assert exports["CONDUIT_BASE_URL"].endswith("/v2/")
    assert exports["CONDUIT_LINK_BASE_URL"].endswith("/link/")


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs a POSIX shell")
def test_eval_of_env_in_the_background_configures_a_shell(tmp_path: Path) -> None:
    """`eval "$(conduit-async fake-server --env &)"` returns at once and leaves the
    server running: the shell's $(...) ends when the server lets go of stdout."""
    command = " ".join(shlex.quote(part) for part in fake_server_command("--port", "0", "--env"))
    # The server's stderr stays open (a terminal, usually): here a file, not our pipe.
    errors = tmp_path / "server.err"
    script = f'eval "$({command} 2>{shlex.quote(str(errors))} &)"\nenv | grep "^CONDUIT_"\n'
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    run = subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, env=environ, timeout=60
    )
    note = errors.read_text()  # written before stdout was let go
    assert note.startswith("conduit-async fake-server: serving as process "), note
    pid = int(note.rsplit("kill ", 1)[1])
    try:
        assert run.returncode == 0, run.stderr
        shown = dict(line.split("=", 1) for line in run.stdout.splitlines())
        assert sorted(shown) == [
            "CONDUIT_BASE_URL",
            "CONDUIT_LINK_BASE_URL",
            "CONDUIT_LINK_TOKEN",
            "CONDUIT_TOKEN",
        ]
        root = shown["CONDUIT_BASE_URL"].removesuffix("v2/")
        with urllib.request.urlopen(root + "_fake/clock", timeout=10) as response:
            assert "now" in json.load(response)  # still serving after the shell moved on
        assert _get(shown["CONDUIT_LINK_BASE_URL"] + "company/", shown["CONDUIT_LINK_TOKEN"]) == []
    finally:
        os.kill(pid, signal.SIGTERM)


# -- the launcher ------------------------------------------------------------------------------


def test_the_launcher_runs_a_server_with_options_and_stops_it() -> None:
    launcher = FakeServerProcess(token_ttl=30, revoke_on_reissue=True, link_token="link_fixed")
    with launcher as server:
        assert "link_fixed" not in repr(server) and server.org_token not in repr(server)
        env = server.environment()
        assert env == {
            "CONDUIT_TOKEN": server.org_token,
            "CONDUIT_LINK_TOKEN": "link_fixed",
            "CONDUIT_BASE_URL": server.base_url,
            "CONDUIT_LINK_BASE_URL": server.link_base_url,
        }
        first = _post(server.link_base_url + "company/", "link_fixed", {"id": "acme1"})
        token = first["api_token"]["token"]
        assert first["api_token"]["expires_at"] - server.advance_clock(0) <= 30
        _get(server.link_base_url + "company/acme1/", "link_fixed")  # reissue: revokes
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(server.link_base_url + "credentials/", token)
        assert refused.value.code == 401
        refused.value.close()
        now = server.advance_clock(31)
        assert now >= first["api_token"]["expires_at"]
        stats = server.fake_stats()
        assert stats["tokens_revoked_on_reissue"] == {"acme1": 1}
        assert stats["revoked_token_requests"] == 1
        assert stats["requests"]["GET /link/credentials/"] == {"401": 1}  # not fast mode
        with pytest.raises(RuntimeError, match="already running"):
            launcher.__enter__()
        assert server.fake_stats()["requests_total"] == 3  # still the same server
        pid = server.pid
        cpu = server.cpu_seconds()
        assert cpu is None or cpu > 0
    assert launcher.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert launcher.stop() == 0  # twice is fine


def test_the_launcher_passes_fault_rate_and_fast() -> None:
    with FakeServerProcess(fault_rate=1.0, seed=5, fast=True) as server:
        for _ in range(10):
            try:
                _get(server.base_url + "workspaces/", server.org_token)
            except urllib.error.HTTPError as error:  # an injected status
                error.close()
            except OSError:  # a reset or a lost response
                pass
        stats = server.fake_stats()
    assert sum(stats["faults_injected"].values()) == 10
    assert stats["requests"] == {}  # fast mode


async def test_cancelled_while_starting_leaves_no_process() -> None:
    launcher = FakeServerProcess()
    starting = asyncio.ensure_future(launcher.__aenter__())
    await asyncio.sleep(0.01)  # spawned; still importing, long before it announces itself
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert launcher.returncode is not None  # reaped: it was killed, not left behind


def test_a_server_that_cannot_start_is_a_clear_error() -> None:
    launcher = FakeServerProcess(token_ttl=-1)
    starting = pytest.raises(RuntimeError, match=r"exited \(2\) before announcing itself")
    with starting as error, launcher:
        pass
    assert "argument --token-ttl: must be a positive number" in str(error.value)
    assert launcher.returncode == 2


# -- helpers ------------------------------------------------------------------------------------


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _post(url: str, token: str, body: object) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
