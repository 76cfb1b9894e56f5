"""The `conduit-async` command, end to end: real processes against a fake server process.

The server is the fake in a process of its own (`FakeServerProcess`), shared by the
module; each test uses its own company ids and ext_ids. Every command's
stdout, stderr and results file is checked for tokens: the fake's tokens
have recognisable shapes, so any token it ever issued would be caught.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conduit_async.cli import main
from conduit_async.cli._progress import Tally, make_progress
from conduit_async.cli._rows import RowSource
from conduit_async.provision import BadRow, CompanySpec, ProvisionResult
from conduit_async.testing import FakeServerInfo, FakeServerProcess

#: Every token the fake server issues: organization, Link APP, workspace, company.
TOKEN = re.compile(r"\b(?:org|link|wt|ct)_[0-9a-f]{32}\b")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServerInfo]:
    with FakeServerProcess() as info:
        yield info


@pytest.fixture
def env(server: FakeServerInfo) -> dict[str, str]:
    """The environment of a configured user: base URLs and both tokens."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    return {**base, **server.environment()}


def no_tokens(text: str, server: FakeServerInfo) -> None:
    assert server.org_token not in text
    assert server.link_token not in text
    found = TOKEN.findall(text)
    assert not found, f"a token was printed: {found[0][:8]}..."


def cli(
    *args: str,
    env: dict[str, str],
    server: FakeServerInfo,
    cwd: Path,
    stdin: str | None = None,
    tokens_allowed: bool = False,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "conduit_async", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    if not tokens_allowed:
        no_tokens(proc.stdout + proc.stderr, server)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def results(path: Path, server: FakeServerInfo) -> list[dict[str, Any]]:
    text = path.read_text()
    no_tokens(text, server)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- provision companies ---------------------------------------------------------------


def test_csv_with_bad_rows_reports_each_with_its_line(
    tmp_path: Path, env: dict[str, str], server: FakeServerInfo
) -> None:
    (tmp_path / "clients.csv").write_text(
        "id,name,page_enabled\n"
        "csvok1,Acme,true\n"
        'csvok2, "Acme, Two",no\n'
        "csv-bad3,Bad id,\n"
        f"csvlong4,{'x' * 1025},\n"
        'csvquote5,"broken\n'
        "csvflag6,Flag,maybe\n"
        "csvmissing7\n"
        "\n"
        "csvok8,,1\n"
    )
    run = cli(
        "provision", "companies", "clients.csv", "--out", "out.jsonl",
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    by_line = {r["line"]: r for r in results(tmp_path / "out.jsonl", server)}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert {line for line, r in by_line.items() if r["outcome"] == "created"} == {2, 3, 10}
    assert by_line[3]["company"]["name"] == "Acme, Two"
    assert by_line[3]["company"]["link_page"]["enabled"] is False
    reasons = {line: r["error"]["message"] for line, r in by_line.items() if r["error"]}
    assert "id:" in reasons[4]
    assert "1025 characters" in reasons[5]
    assert "quoting" in reasons[6]
    assert "page_enabled" in reasons[7] and "maybe" in reasons[7]
    assert "missing 'name'" in reasons[8]
    for line in reasons:
        assert f"line {line}" in run.stdout  # the summary lists every failure with its line
    assert "created" in run.stdout and "rows/s" in run.stdout
    created = server.fake_stats()["companies_created"]
    assert all(created[cid] == 1 for cid in ("csvok1", "csvok2", "csvok8"))
    assert "csvflag6" not in created

    again = cli(
        "provision", "companies", "clients.csv", "--json",
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads(again.stdout)
    assert summary["outcomes"] == {"created": 0, "updated": 0, "unchanged": 3, "failed": 5}
    assert again.returncode == 1


def test_jsonl_from_stdin_and_a_clean_run_exits_0(
    tmp_path: Path, env: dict[str, str], server: FakeServerInfo
) -> None:
    lines = [
        {"id": "jsonok1", "name": "J1"},
        {"id": 20240101, "page_enabled": "yes"},
        {"id": "jsonok3", "page_enabled": False},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    ok = cli(
        "provision", "companies", "-", "--format", "jsonl", "--json",
        env=env, server=server, cwd=tmp_path, stdin=text,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["outcomes"]["created"] == 3

    (tmp_path / "mixed.ndjson").write_text(
        text + 'not json\n[1, 2]\n{"id": "jsontypo", "nmae": "x"}\n{"id": "jsonok4"}\n'
    )
    mixed = cli(
        "provision", "companies", "mixed.ndjson", "--out", "-",
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert mixed.returncode == 1
    rows = [json.loads(line) for line in mixed.stdout.splitlines()]  # results on stdout
    by_line = {r["line"]: r for r in rows}
    assert by_line[4]["error"]["message"].startswith("json: not valid JSON")
    assert "expected an object" in by_line[5]["error"]["message"]
    assert "nmae" in by_line[6]["error"]["message"]
    assert by_line[7]["outcome"] == "created"
    assert {by_line[n]["outcome"] for n in (1, 2, 3)} == {"unchanged"}
    assert "Failures:" in mixed.stderr  # the summary moved out of the way, to stderr


def test_interrupted_run_resumes_with_no_row_lost_or_created_twice(
    tmp_path: Path, env: dict[str, str], server: FakeServerInfo
) -> None:
    count = 3000
    ids = [f"resume{n:05d}" for n in range(count)]
    (tmp_path / "many.csv").write_text("id,name\n" + "".join(f"{c},R {c}\n" for c in ids))
    out = tmp_path / "results.jsonl"
    args = [sys.executable, "-m", "conduit_async", "provision", "companies", "many.csv"]
    proc = subprocess.Popen(
        [*args, "--concurrency", "8", "--out", "results.jsonl"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not out.exists() or out.read_text().count("\n") < 100:
        assert time.monotonic() < deadline and proc.poll() is None, "no results came"
        time.sleep(0.005)
    # Freeze the server so that rows are surely in flight when Ctrl-C arrives, then let
    # them finish: they must be recorded before the command exits.
    os.kill(server.pid, signal.SIGSTOP)
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=30)
    no_tokens(stdout + stderr, server)
    assert proc.returncode == 130, stderr
    assert "Resume with: conduit-async provision companies many.csv" in stderr
    assert "--resume results.jsonl" in stderr
    first = results(out, server)
    assert 100 <= len(first) < count
    assert all(r["outcome"] == "created" for r in first)

    resumed = cli(
        "provision", "companies", "many.csv", "--resume", "results.jsonl", "--json",
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == len(first)
    assert summary["rows"] == count - len(first)

    successes: dict[str, int] = {}
    for record in results(out, server):
        assert record["outcome"] != "failed"
        successes[record["id"]] = successes.get(record["id"], 0) + 1
    assert successes == dict.fromkeys(ids, 1)
    created = server.fake_stats()["companies_created"]
    assert {cid: created.get(cid) for cid in ids} == dict.fromkeys(ids, 1)


def test_ctrl_c_while_waiting_for_a_slow_pipe_stops_at_once(
    tmp_path: Path, env: dict[str, str], server: FakeServerInfo
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "conduit_async", "provision", "companies", "-", "--out", "s.jsonl"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write("id,name\nslowpipe1,One\nslowpipe2,Two\n")
    proc.stdin.flush()  # ...and then nothing more: the producer is slow
    out = tmp_path / "s.jsonl"
    deadline = time.monotonic() + 20
    while not out.exists() or out.read_text().count("\n") < 2:
        assert time.monotonic() < deadline, "the rows sent were not provisioned"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=10)
    no_tokens(stdout + stderr, server)
    assert proc.returncode == 130, stderr
    assert sorted(r["id"] for r in results(out, server)) == ["slowpipe1", "slowpipe2"]
    assert "--resume s.jsonl" in stderr


# -- provision workspaces and the everyday commands ---------------------------------------


def test_workspaces_with_cloned_dashboards_and_everyday_commands(
    tmp_path: Path, env: dict[str, str], server: FakeServerInfo
) -> None:
    (tmp_path / "ws.csv").write_text("name,ext_id\nCLI One,cliws1\nCLI Two,cliws2\nNo id,\n")
    run = cli(
        "provision", "workspaces", "ws.csv", "--clone-dashboard", "1", "--out", "ws.jsonl",
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1  # the row without ext_id
    by_ext = {r["ext_id"]: r for r in results(tmp_path / "ws.jsonl", server)}
    assert by_ext["cliws1"]["outcome"] == "created"
    assert list(by_ext["cliws1"]["share_urls"]) == ["1"]
    assert by_ext[""]["line"] == 4 and "ext_id" in by_ext[""]["error"]["message"]

    listing = cli("workspaces", "list", "--json", env=env, server=server, cwd=tmp_path)
    workspaces = {w["ext_id"]: w for w in json.loads(listing.stdout)}
    ws_id = workspaces["cliws1"]["id"]
    assert set(workspaces["cliws1"]) == {"id", "ext_id", "name"}
    table = cli("workspaces", "list", env=env, server=server, cwd=tmp_path)
    assert table.stdout.splitlines()[0].split() == ["ID", "EXT_ID", "NAME"]
    assert any("cliws2" in line for line in table.stdout.splitlines())

    made = cli(
        "workspaces", "create", "CLI Three", "--ext-id", "cliws3", "--json",
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(made.stdout)["ext_id"] == "cliws3"
    clone = cli(
        "dashboards", "clone", "2", "--workspace", str(ws_id), "--name", "Mine", "--json",
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    clone_id = json.loads(clone.stdout)["id"]
    inside = cli(
        "dashboards", "list", "--ext-id", "cliws1", "--json",
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert {d["name"] for d in json.loads(inside.stdout)} == {"Sales Dashboard", "Mine"}
    share = cli(
        "dashboards", "share", str(clone_id), "--workspace", str(ws_id),
        env=env, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert share.returncode == 0 and share.stdout.startswith("http")
    org = cli("--json", "dashboards", "list", env=env, server=server, cwd=tmp_path)
    assert [d["id"] for d in json.loads(org.stdout)] == [1, 2, 3]

    missing = cli(
        "dashboards", "share", "1", "--workspace", "99999", env=env, server=server, cwd=tmp_path
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("conduit-async: error:") and "99999" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_companies_get_and_token_and_tokens_never_leak_elsewhere(
    tmp_path: Path, env: dict[str, str], server: FakeServerInfo
) -> None:
    cli(
        "provision", "companies", "-", "--format", "csv", "--quiet",
        env=env, server=server, cwd=tmp_path, stdin="id,name\ngetme1,Get Me\n",
    )  # fmt: skip
    shown = cli("companies", "get", "GETME1", "--json", env=env, server=server, cwd=tmp_path)
    company = json.loads(shown.stdout)
    assert company["name"] == "Get Me" and "api_token" not in company
    human = cli("companies", "get", "getme1", env=env, server=server, cwd=tmp_path)
    assert "Get Me" in human.stdout

    token = cli(
        "companies", "token", "getme1",
        env=env, server=server, cwd=tmp_path, tokens_allowed=True,
    )  # fmt: skip
    assert token.returncode == 0
    assert TOKEN.fullmatch(token.stdout.strip())  # the detector does see a token
    assert token.stderr == ""

    unknown = cli("companies", "get", "nosuch1", env=env, server=server, cwd=tmp_path)
    assert unknown.returncode == 1 and "404" in unknown.stderr


# -- configuration ---------------------------------------------------------------------------


def test_token_file_must_be_private(
    tmp_path: Path, env: dict[str, str], server: FakeServerInfo
) -> None:
    bare = {k: v for k, v in env.items() if not k.endswith("TOKEN")}
    token_file = tmp_path / "conduit.env"
    token_file.write_text(
        f"# tokens\nCONDUIT_TOKEN={server.org_token}\n"
        f'export CONDUIT_LINK_TOKEN="{server.link_token}"\n'
    )
    token_file.chmod(0o644)
    refused = cli(
        "--token-file", str(token_file), "workspaces", "list",
        env=bare, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "0644" in refused.stderr and "too open" in refused.stderr
    assert refused.stdout == ""

    token_file.chmod(0o600)
    allowed = cli(
        "workspaces", "list", "--token-file", str(token_file), "--json",
        env=bare, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr

    single = tmp_path / "link.token"
    single.write_text(server.link_token + "\n")
    single.chmod(0o600)
    by_bare_token = cli(
        "companies", "get", "getme1", "--token-file", str(single),
        env=bare, server=server, cwd=tmp_path,
    )  # fmt: skip
    assert by_bare_token.returncode in (0, 1), by_bare_token.stderr  # 1 if getme1 is not made
    assert "token" not in by_bare_token.stderr.lower()

    none = cli("workspaces", "list", env=bare, server=server, cwd=tmp_path)
    assert none.returncode == 2 and "CONDUIT_TOKEN" in none.stderr


def test_usage_errors_exit_2_with_one_line(
    tmp_path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process (main() returns the status), to spare a process start per case."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wrong.csv").write_text("ident,name\nx,y\n")
    (tmp_path / "ws.csv").write_text("name,ext_id\nA,a\n")
    cases = {
        ("provision", "companies", "wrong.csv"): "unknown column 'ident'",
        ("provision", "companies", "missing.csv"): "cannot read 'missing.csv'",
        ("provision", "companies", "wrong.csv", "--concurrency", "0"): "at least 1",
        ("provision", "workspaces", "ws.csv", "--clone-dashboard", "x"): "not a whole number",
        ("provision", "workspaces", "ws.csv", "--clone-dashboard", "77"): "no dashboard 77",
        ("workspaces",): "required",
        ("dashboards", "list", "--workspace", "1", "--ext-id", "x"): "not allowed with",
        ("--timeout", "-1", "workspaces", "list"): "positive number of seconds",
        ("workspaces", "list", "--base-url", "ftp://x/"): "must be an http(s) URL",
        ("workspaces", "list", "--base-url", "http://conduit.test/v2/"): "non-HTTPS",
    }
    for args, message in cases.items():
        assert main(list(args)) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        if not err.startswith("usage:"):  # argparse shows the usage; everything else is a line
            assert err.startswith("conduit-async: error: ") and err.count("\n") == 1, err


# -- demo and fake server ----------------------------------------------------------------------


def test_demo_needs_no_configuration(tmp_path: Path) -> None:
    bare = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    run = subprocess.run(
        [sys.executable, "-m", "conduit_async", "demo", "--companies", "60", "--workspaces", "3"],
        capture_output=True,
        text=True,
        env=bare,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "60 created" in run.stdout and "3 created" in run.stdout
    assert "0 token fetches" in run.stdout and "50 token fetches" in run.stdout
    assert "Requests that carried an expired token: 0" in run.stdout
    assert not TOKEN.findall(run.stdout + run.stderr)


def test_fake_server_command_delegates(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "conduit_async", "fake-server", "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    assert info["base_url"].endswith("/v2/")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert proc.returncode == 0


# -- in-process: the parser, the reader, the progress display ---------------------------------


def test_main_returns_status_codes_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "provision" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["provision", "companies"]) == 2
    assert main(["no-such-command"]) == 2


def test_reader_streams_rows_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(
        b"\xef\xbb\xbfID, Name ,page_enabled\r\n"
        b"a1,Alpha,YES\r\n"
        b"\r\n"
        b"a2,\xff\xfe,\r\n" + b"a3," + b"n" * 70_000 + b",\r\n"
        b"a4,Four,0\n"
        b"a5,Five,off"
    )
    source = RowSource(str(path), "companies")
    try:
        assert source.format == "csv" and source.columns == ["id", "name", "page_enabled"]
        assert source.estimate() == 6
        rows = list(source.rows())
    finally:
        source.close()
    assert rows[0] == CompanySpec("a1", "Alpha", True, line=2)
    assert isinstance(rows[1], BadRow) and rows[1].line == 4 and "UTF-8" in str(rows[1].error)
    assert isinstance(rows[2], BadRow) and rows[2].line == 5 and "longer" in str(rows[2].error)
    assert rows[3] == CompanySpec("a4", "Four", False, line=6)
    assert isinstance(rows[4], BadRow) and rows[4].key == "a5" and rows[4].line == 7

    sniffed = tmp_path / "rows.txt"
    sniffed.write_text('{"name": "W", "ext_id": "w"}\n')
    source = RowSource(str(sniffed), "workspaces")
    assert source.format == "jsonl"
    assert [r.ext_id for r in source.rows()] == ["w"]  # type: ignore[union-attr]
    source.close()


def test_reader_stops_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("id\n" + "".join(f"s{n}\n" for n in range(1000)))
    source = RowSource(str(path), "companies")
    taken: list[object] = []
    for row in source.rows(lambda: len(taken) >= 10):
        taken.append(row)
    source.close()
    assert len(taken) == 10


def test_plain_progress_lines_and_summary() -> None:
    stream = io.StringIO()
    progress = make_progress(4, "provision companies", quiet=False, stream=stream, interval=0)
    tally = Tally()
    for n, outcome in enumerate(["created", "failed", "unchanged", "created"]):
        error = ValueError("nope") if outcome == "failed" else None
        tally.add(ProvisionResult(f"p{n}", outcome, error=error, line=n + 2))  # type: ignore[arg-type]
        progress.advance(tally)
    progress.close(tally, complete=True)
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("provision companies: 4/4 rows (100%)")
    assert "1 failed" in lines[-1]
    summary = "\n".join(tally.summary("provision companies"))
    assert "line 3 (p1): nope" in summary
    assert make_progress(4, "x", quiet=True, stream=stream).__class__.__name__ == "_Silent"
