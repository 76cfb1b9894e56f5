"""The `conduit-async` command as an operator meets it: Ctrl-C at any moment, a results
file that would overwrite its input, `--version`, the company and workspace commands,
errors as JSON, counts that read right, a progress display that tells the truth on
`--resume`, and a demo that shows what it survived.

Signals go to real processes; everything else runs `main()` in-process against a fake
server process, which is cheaper than a process per command.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conduit_async import __version__
from conduit_async.cli import main
from conduit_async.cli._progress import Tally, make_progress
from conduit_async.provision import ProvisionResult

#: Every token the fake server issues: organization, Link APP, workspace, company.
TOKEN = re.compile(r"\b(?:org|link|wt|ct)_[0-9a-f]{32}\b")

needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd") or not hasattr(os, "mkfifo"),
    reason="watches the process through /proc and uses a FIFO",
)


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "conduit_async.testing", "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture
def configured(
    server: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, Any]:
    """The environment of a configured user, for `main()` in this process."""
    for key in list(os.environ):
        if key.startswith("CONDUIT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CONDUIT_BASE_URL", server["base_url"])
    monkeypatch.setenv("CONDUIT_LINK_BASE_URL", server["link_base_url"])
    monkeypatch.setenv("CONDUIT_TOKEN", server["org_token"])
    monkeypatch.setenv("CONDUIT_LINK_TOKEN", server["link_token"])
    monkeypatch.chdir(tmp_path)
    return server


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(configured: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Run:
    """`main(args)` -> (status, stdout, stderr), checked for tokens unless allowed."""

    def call(*args: str, tokens_allowed: bool = False) -> tuple[int, str, str]:
        status = main(list(args))
        out, err = capsys.readouterr()
        if not tokens_allowed:
            assert not TOKEN.findall(out + err), "a token was printed"
        assert "Traceback" not in err
        return status, out, err

    return call


def offline_env() -> dict[str, str]:
    """Configured, but for a server nobody runs: the signal tests send no request."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    env["CONDUIT_LINK_TOKEN"] = "link_" + "0" * 32
    env["CONDUIT_LINK_BASE_URL"] = "http://127.0.0.1:9/link/"
    return env


def start(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conduit_async", *args],
        cwd=cwd,
        env=offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert proc.poll() is None, f"exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.002)


def has_open(pid: int, path: Path) -> bool:
    fds = f"/proc/{pid}/fd"
    try:
        links = [os.readlink(os.path.join(fds, fd)) for fd in os.listdir(fds)]
    except OSError:  # the process or one descriptor went away meanwhile
        return False
    return str(path) in links


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def interrupted(proc: subprocess.Popen[str], signum: int = signal.SIGINT) -> tuple[str, str]:
    proc.send_signal(signum)
    proc.wait(timeout=30)  # stdin stays open meanwhile: communicate() would close it
    stdout, stderr = proc.communicate()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    return stdout, stderr


# -- Ctrl-C before the batch starts (issue 11, item 13) ------------------------------------


@needs_proc
def test_ctrl_c_while_reading_a_long_resume_file_exits_130_with_the_hint(
    tmp_path: Path,
) -> None:
    resume = tmp_path / "results.jsonl"
    record = '{{"line": {n}, "id": "old{n:07d}", "outcome": "created", "attempts": 1}}\n'
    resume.write_text("".join(record.format(n=n) for n in range(2, 400_002)))
    size = resume.stat().st_size
    # The input is a pipe that never sends a line: were the signal late, the command would
    # still be waiting, never provisioning and exiting 0.
    proc = start(
        ["provision", "companies", "-", "--format", "csv", "--resume", "results.jsonl"],
        tmp_path,
        stdin=subprocess.PIPE,
    )
    wait_for(lambda: has_open(proc.pid, resume), proc, "opened the resume file")
    stdout, stderr = interrupted(proc)
    assert "interrupted: true" not in stdout  # a person's summary, not JSON
    assert "provision companies: 0 rows" in stdout
    assert "Resume with: conduit-async provision companies - --format csv" in stderr
    assert "--resume results.jsonl" in stderr
    assert resume.stat().st_size == size  # nothing was appended


@needs_proc
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_stdin_sends_no_first_line_exits_130(tmp_path: Path, signum: int) -> None:
    proc = start(
        ["provision", "companies", "-", "--out", "out.jsonl", "--json"],
        tmp_path,
        stdin=subprocess.PIPE,
    )
    # A second thread means the input is being read off the event loop: the signal
    # handlers are in place before it starts.
    wait_for(lambda: threads(proc.pid) >= 2, proc, "started reading stdin")
    stdout, stderr = interrupted(proc, signum)
    summary = json.loads(stdout)
    assert summary["interrupted"] is True and summary["rows"] == 0
    error = json.loads(stderr)["error"]  # with --json: one object, and nothing else
    assert error["type"] == "Interrupted" and "status" not in error
    assert "--resume out.jsonl" in error["message"]
    assert not (tmp_path / "out.jsonl").exists()  # never opened: no row was done


@needs_proc
def test_ctrl_c_while_a_fifo_sends_no_first_line_exits_130(tmp_path: Path) -> None:
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    proc = start(["provision", "companies", "rows.csv", "--out", "out.jsonl"], tmp_path)
    writer = None

    def reader_is_there() -> bool:
        nonlocal writer
        try:  # succeeds once the command has opened the FIFO for reading
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        return True

    wait_for(reader_is_there, proc, "opened the FIFO")
    try:
        _, stderr = interrupted(proc)
    finally:
        assert writer is not None
        os.close(writer)
    assert "Interrupted after 0 rows" in stderr
    assert "Resume with: conduit-async provision companies rows.csv --resume out.jsonl" in stderr


# -- a results file that is the input (issue 11, item 14) ----------------------------------


def test_out_or_resume_naming_the_input_is_refused_before_writing(tmp_path: Path, run: Run) -> None:
    data = "id,name\n" + "".join(f"same{n},S {n}\n" for n in range(5000))
    rows = tmp_path / "rows.csv"
    rows.write_text(data)
    (tmp_path / "sub").mkdir()
    os.link(rows, tmp_path / "hard.csv")
    os.symlink(rows, tmp_path / "soft.csv")
    for option, path in [
        ("--out", "rows.csv"),
        ("--out", "./sub/../rows.csv"),
        ("--out", str(rows)),
        ("--out", "hard.csv"),
        ("--out", "soft.csv"),
        ("--resume", "rows.csv"),
        ("--resume", "hard.csv"),
    ]:
        status, out, err = run("provision", "companies", "rows.csv", option, path)
        assert status == 2, (option, path, out, err)
        assert f"{option} {path!r} is the input file" in err, err
        assert err.count("\n") == 1 and out == ""
        assert rows.read_text() == data
    status, _, err = run("--json", "provision", "companies", "soft.csv", "--out", "rows.csv")
    assert status == 2 and json.loads(err)["error"]["type"] == "UsageError"
    assert rows.read_text() == data


# -- the operator's commands (issue 12) ------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"conduit-async {__version__}\n"


def test_companies_create_list_update_and_token_with_expiry(run: Run) -> None:
    status, out, _ = run("companies", "create", "opco1", "--name", "Op Co", "--json")
    assert status == 0
    made = json.loads(out)
    assert made["id"] == "opco1" and made["name"] == "Op Co" and made["page_enabled"] is True
    assert "api_token" not in made and "token" not in made

    status, out, _ = run("companies", "update", "opco1", "--no-page-enabled")
    assert status == 0 and re.search(r"page_enabled:\s+no", out)
    status, out, _ = run("companies", "update", "opco1", "--name", "Op Co 2", "--json")
    assert json.loads(out)["name"] == "Op Co 2" and json.loads(out)["page_enabled"] is False
    status, _, err = run("companies", "update", "opco1")
    assert status == 2 and "nothing to update" in err

    status, out, _ = run("companies", "list", "--json")
    listed = {c["id"]: c for c in json.loads(out)}
    assert listed["opco1"]["name"] == "Op Co 2"
    status, out, _ = run("companies", "list")
    assert out.splitlines()[0].split() == ["ID", "NAME", "PAGE", "CREATED"]
    assert any(line.startswith("opco1 ") for line in out.splitlines())

    status, out, err = run("companies", "token", "opco1", "--json", tokens_allowed=True)
    token = json.loads(out)
    assert status == 0 and err == ""
    assert TOKEN.fullmatch(token["token"]) and token["id"] == "opco1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", token["expires_at"])

    status, out, err = run("companies", "create", "opco1", "--json")
    assert status == 1 and out == ""
    error = json.loads(err)["error"]
    assert error["type"] == "ConflictError" and error["status"] == 409
    assert list(error) == ["type", "status", "message"]


def test_workspaces_disable_by_id_or_ext_id(run: Run) -> None:
    _, out, _ = run("workspaces", "create", "Op WS", "--ext-id", "opws1", "--json")
    first = json.loads(out)["id"]
    _, out, _ = run("workspaces", "create", "Op WS 2", "--ext-id", "opws2", "--json")
    second = json.loads(out)["id"]

    status, out, _ = run("workspaces", "disable", str(first))
    assert status == 0 and f"Workspace {first} disabled" in out
    status, out, _ = run("workspaces", "disable", "--ext-id", "opws2", "--json")
    assert status == 0 and json.loads(out) == {"id": second, "disabled": True}
    _, out, _ = run("workspaces", "list", "--json")
    assert {first, second}.isdisjoint(w["id"] for w in json.loads(out))

    status, _, err = run("workspaces", "disable")
    assert status == 2 and "one of the arguments ID --ext-id is required" in err
    status, _, err = run("workspaces", "disable", "999999", "--json")
    error = json.loads(err)["error"]
    assert status == 1 and error["type"] == "NotFoundError" and error["status"] == 404


def test_every_error_is_one_json_object_with_json(run: Run, tmp_path: Path) -> None:
    cases: dict[tuple[str, ...], tuple[int, str]] = {
        ("--json", "workspaces", "list", "--timeout", "x"): (2, "UsageError"),
        ("companies", "get", "nosuch1", "--json"): (1, "NotFoundError"),
        ("companies", "token", "nosuch1", "--json"): (1, "NotFoundError"),
        ("--json", "provision", "companies", "missing.csv"): (2, "UsageError"),
        ("dashboards", "share", "1", "--workspace", "99999", "--json"): (1, "NotFoundError"),
        ("--json", "--base-url", "ftp://x/", "workspaces", "list"): (2, "ConfigurationError"),
        ("demo", "--faults", "2", "--json"): (2, "UsageError"),
    }
    for args, (expected, kind) in cases.items():
        status, out, err = run(*args)
        assert status == expected, (args, err)
        assert out == "" and err.count("\n") == 1, (args, err)
        error = json.loads(err)["error"]
        assert error["type"] == kind and error["message"], (args, error)
        assert ("status" in error) == kind.endswith("NotFoundError"), (args, error)
    # Without --json, the same errors stay one line for a person.
    status, _, err = run("companies", "get", "nosuch1")
    assert status == 1 and err.startswith("conduit-async: error: ") and "404" in err


# -- counts, progress and resume (issue 12) ---------------------------------------------------


def test_one_row_reads_one_row(run: Run, tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("id,name\nonerow1,One\n")
    status, out, err = run("provision", "companies", "one.csv")
    assert status == 0, err
    assert out.startswith("provision companies: 1 row in ")
    assert not re.search(r"(?<![\d.])1 rows", out + err)  # "51 rows/s" is a rate, fine


def test_progress_on_resume_counts_only_this_runs_rows_and_ends_at_100(
    run: Run, tmp_path: Path
) -> None:
    (tmp_path / "first.csv").write_text("id\n" + "".join(f"prog{n}\n" for n in range(8)))
    status, _, err = run("provision", "companies", "first.csv", "--out", "r.jsonl")
    assert status == 0, err
    (tmp_path / "all.csv").write_text("id\n" + "".join(f"prog{n}\n" for n in range(12)))
    status, out, err = run("provision", "companies", "all.csv", "--resume", "r.jsonl")
    assert status == 0, err
    # stderr is not a terminal here: plain lines, and a final one at the end
    assert err.splitlines()[-1].startswith("provision companies: 4/4 rows (100%)"), err
    assert "skipped" in out and "8 (done in an earlier run)" in out


def test_plain_lines_at_most_every_interval_and_a_final_one() -> None:
    stream = io.StringIO()
    now = [0.0]
    progress = make_progress(
        10, "batch", quiet=False, stream=stream, interval=5.0, clock=lambda: now[0]
    )
    tally = Tally()
    for n in range(7):  # a row a second
        now[0] += 1.0
        tally.add(ProvisionResult(f"l{n}", "created"))
        progress.advance(tally)
    tally.skipped += 3  # rows skipped by --resume are not progress
    progress.advance(tally)
    progress.close(tally, complete=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("batch: 5/10 rows (50%)")
    assert lines[1].startswith("batch: 7/7 rows (100%)")  # complete: the total was an estimate

    quiet = io.StringIO()
    silent = make_progress(10, "batch", quiet=False, machine=True, stream=quiet)
    silent.message("not for a machine")
    silent.close(tally, complete=True)
    assert quiet.getvalue() == ""  # --json on a pipe: stderr keeps only the error object
    unknown = io.StringIO()
    one = Tally()
    one.add(ProvisionResult("u1", "created"))
    make_progress(None, "batch", quiet=False, stream=unknown).close(one)
    assert unknown.getvalue().startswith("batch: 1 row,")


# -- the demo (issue 12) -------------------------------------------------------------------------


def test_demo_survives_faults_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--companies", "30", "--workspaces", "2", "--faults", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "It gives 10% of requests a fault" in out
    assert "30 created, 0 updated, 0 unchanged, 0 failed" in out
    survived = re.search(r"Faults injected by the server: (\d+) requests failed on purpose", out)
    assert survived and int(survived.group(1)) > 0, out
    assert "reconciled" in out
    assert out.splitlines()[-1] == (
        "All survived: 0 rows failed, 0 calls failed, 0 objects made twice, 0 expired tokens sent"
    )
    assert "Objects made twice on the server: 0" in out
    assert "Requests that carried an expired token: 0" in out
    assert "they stop working when the demo ends" in out
    assert not TOKEN.findall(out)

    assert main(["demo", "--companies", "5", "--workspaces", "1", "--faults", "0"]) == 0
    plain = capsys.readouterr().out
    assert "Faults injected" not in plain and "Objects made twice on the server: 0" in plain
