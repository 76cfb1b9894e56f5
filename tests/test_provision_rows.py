"""Rows: one schema per kind (reading, checking, identity, fingerprint), duplicates
refused within one input, `--resume` that notices changed rows, and input files
as operators write them (`;` or tabs, a flag left off, an empty file).

The CLI runs in-process (`main()` runs its own event loop) against a fake server
served from a thread, so the fake's state is read directly.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_provision import clock, conduit, fake

from conduit_async import BadRow, CompanySpec, Conduit, ValidationError, WorkspaceSpec
from conduit_async.cli import main
from conduit_async.provision._keys import KeyTable
from conduit_async.provision._schema import COMPANIES, WORKSPACES
from conduit_async.testing import FakeConduit

__all__ = ["clock", "conduit", "fake"]  # fixtures shared with test_provision

# -- the schema --------------------------------------------------------------------------


def test_one_schema_reads_csv_cells_json_and_library_rows() -> None:
    text = COMPANIES.read_text({"id": "Acme1", "name": "", "page_enabled": "YES"}, 3)
    assert text == CompanySpec("Acme1", None, True, line=3)
    number = COMPANIES.read_json({"id": 20240101, "page_enabled": "no"}, 4)
    assert number == CompanySpec("20240101", None, False, line=4)
    # The library takes values as given: a flag must be a bool there.
    strict = COMPANIES.check({"id": "flag1", "page_enabled": "yes"})
    assert isinstance(strict, BadRow) and strict.error.argument == "page_enabled"  # type: ignore[attr-defined]
    typo = COMPANIES.read_json({"id": "t1", "nmae": "x"}, 5)
    assert isinstance(typo, BadRow) and typo.key == "t1" and typo.line == 5
    assert str(typo.error) == "nmae: unknown field (expected id, name, page_enabled)"
    missing = WORKSPACES.read_json({"name": "Kept"}, 6)
    assert isinstance(missing, BadRow) and missing.name == "Kept"
    assert str(missing.error) == "ext_id: is required"
    blank = WORKSPACES.read_text({"name": "No id", "ext_id": ""}, 7)
    assert isinstance(blank, BadRow) and blank.name == "No id" and "ext_id" in str(blank.error)

    assert COMPANIES.columns == ("id", "name", "page_enabled")
    assert COMPANIES.key(CompanySpec("AcMe1")) == "acme1" == COMPANIES.identity("ACME1")
    assert WORKSPACES.key(WorkspaceSpec("W", "Ext-A")) == "Ext-A"


def test_the_fingerprint_covers_the_managed_fields_only_and_is_stable() -> None:
    base = COMPANIES.fingerprint(CompanySpec("acme1", "Acme", True, line=2))
    # Identity (any case) and position are not fields the row manages.
    assert COMPANIES.fingerprint(CompanySpec("ACME1", "Acme", True, line=9)) == base
    assert COMPANIES.fingerprint(CompanySpec("acme1", "Acme!", True)) != base
    assert COMPANIES.fingerprint(CompanySpec("acme1", "Acme", None)) != base
    assert COMPANIES.fingerprint(CompanySpec("acme1", "Acme", False)) != base
    # Kept in results files across runs and versions: not `hash()`, which is salted.
    assert base == "f9623e3a794ac94e"
    assert WORKSPACES.fingerprint(WorkspaceSpec("A", "a")) != WORKSPACES.fingerprint(
        WorkspaceSpec("B", "a")
    )


def test_the_key_table_stores_many_keys_compactly() -> None:
    table = KeyTable()
    for n in range(50_000):
        assert table.setdefault(f"key{n}", n) is None
    assert len(table) == 50_000
    assert table.setdefault("key123", 7) == 123  # the first value stays
    assert table.get("key49999") == 49_999 and table.get("nope") is None
    table.put("key123", -5)
    assert table.get("key123") == -5 and len(table) == 50_000


# -- duplicates within one input -----------------------------------------------------------


async def test_a_second_row_for_a_company_is_refused_in_input_order(
    fake: FakeConduit, conduit: Conduit
) -> None:
    rows = [
        CompanySpec("dup1", "First", line=2),
        CompanySpec("DUP1", "Second", line=3),  # ids compare without regard to case
        CompanySpec("other1", line=4),
        CompanySpec("dup1", "Third", line=5),
    ]
    results = {r.line: r async for r in conduit.companies.provision(rows, concurrency=4)}

    assert results[2].outcome == results[4].outcome == "created"
    for line in (3, 5):
        assert results[line].outcome == "failed"
        assert str(results[line].error) == "id: duplicate of line 2"
        assert isinstance(results[line].error, ValidationError)
        assert results[line].attempts == 0
    assert fake.companies["dup1"].name == "First"  # never applied
    assert fake.stats.companies_created == {"dup1": 1, "other1": 1}
    assert fake.stats.count("POST /link/company/{cid}/") == 0


async def test_without_line_numbers_a_duplicate_names_the_row(conduit: Conduit) -> None:
    async def rows() -> AsyncIterator[dict[str, object]]:
        for cid in ("r1", "r2", "R1", "r3", "r2"):
            await asyncio.sleep(0)
            yield {"id": cid}

    results = [r async for r in conduit.companies.provision(rows(), concurrency=3)]
    reasons = sorted(str(r.error) for r in results if not r.ok)
    assert reasons == ["id: duplicate of row 1", "id: duplicate of row 2"]
    assert sorted(r.id for r in results if r.ok) == ["r1", "r2", "r3"]


# -- the CLI, in-process -------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[FakeConduit]:
    """A fake server running on its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-server", daemon=True)
    thread.start()
    server = FakeConduit(port=0)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def cli(
    served: FakeConduit,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """Run `conduit-async ARGS` in `tmp_path`; returns (status, stdout, stderr)."""
    monkeypatch.setenv("CONDUIT_BASE_URL", served.base_url)
    monkeypatch.setenv("CONDUIT_LINK_BASE_URL", served.link_base_url)
    monkeypatch.setenv("CONDUIT_TOKEN", served.org_token)
    monkeypatch.setenv("CONDUIT_LINK_TOKEN", served.link_token)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        status = main([*args, "--quiet"] if args[0] == "provision" else list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_resume_provisions_again_the_rows_whose_fields_changed(
    cli: Any, served: FakeConduit, tmp_path: Path
) -> None:
    (tmp_path / "v1.csv").write_text("id,name\nfpa1,A\nfpb1,B\nfpc1,C\n")
    status, _, err = cli("provision", "companies", "v1.csv", "--out", "r.jsonl")
    assert status == 0, err
    first = records(tmp_path / "r.jsonl")
    assert all(len(r["fingerprint"]) == 16 for r in first)

    # Another input: one row renamed, one new, and the same id in another case.
    (tmp_path / "v2.csv").write_text("id,name\nFPA1,A\nfpb1,B renamed\nfpc1,C\nfpd1,D\n")
    status, out, err = cli("provision", "companies", "v2.csv", "--resume", "r.jsonl", "--json")
    assert status == 0, err
    summary = json.loads(out)
    assert summary["skipped"] == 2
    assert summary["outcomes"] == {"created": 1, "updated": 1, "unchanged": 0, "failed": 0}
    assert served.companies["fpb1"].name == "B renamed"

    # The record now says B was done with its new fields: a third run skips everything.
    status, out, _ = cli("provision", "companies", "v2.csv", "--resume", "r.jsonl", "--json")
    assert status == 0 and json.loads(out)["skipped"] == 4


def test_a_results_file_from_0_1_0_still_resumes(
    cli: Any, served: FakeConduit, tmp_path: Path
) -> None:
    """0.1.0 kept no fingerprint: its rows count as done whatever their fields, as 0.1.0
    resumed them."""
    legacy = [
        {"line": 2, "id": "LEGACY1", "outcome": "created", "attempts": 1, "error": None},
        {"line": 3, "id": "legacy2", "outcome": "failed", "attempts": 3, "error": {}},
    ]
    (tmp_path / "old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in legacy))
    (tmp_path / "in.csv").write_text("id,name\nlegacy1,Renamed\nlegacy2,Two\n")
    status, out, err = cli("provision", "companies", "in.csv", "--resume", "old.jsonl", "--json")
    assert status == 0, err
    summary = json.loads(out)
    assert summary["skipped"] == 1
    assert summary["outcomes"]["created"] == 1
    assert "legacy1" not in served.companies


def test_on_resume_a_second_row_for_a_done_id_is_still_a_duplicate(
    cli: Any, served: FakeConduit, tmp_path: Path
) -> None:
    (tmp_path / "one.csv").write_text("id,name\nrdup1,First\n")
    assert cli("provision", "companies", "one.csv", "--out", "r.jsonl")[0] == 0
    (tmp_path / "two.csv").write_text("id,name\nrdup1,First\nother9,O\nRDUP1,Second\n")
    status, out, _ = cli("provision", "companies", "two.csv", "--resume", "r.jsonl", "--json")
    assert status == 1
    summary = json.loads(out)
    assert summary["skipped"] == 1
    assert summary["failures"] == [{"line": 4, "key": "rdup1", "reason": "id: duplicate of line 2"}]
    assert served.companies["rdup1"].name == "First"


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_separated_files_are_understood(
    cli: Any, served: FakeConduit, tmp_path: Path, delimiter: str
) -> None:
    tag = "semi" if delimiter == ";" else "tab"
    rows = [["id", "name", "page_enabled"], [f"{tag}1", "Acme, Inc.", "no"], [f"{tag}2", "B"]]
    (tmp_path / "in.csv").write_text("".join(delimiter.join(r) + "\n" for r in rows))
    status, _, err = cli("provision", "companies", "in.csv", "--out", "r.jsonl")
    assert status == 0, err
    assert served.companies[f"{tag}1"].name == "Acme, Inc."
    assert served.companies[f"{tag}1"].page_enabled is False
    # page_enabled left off the end of the line: not managed, the server's default.
    assert served.companies[f"{tag}2"].page_enabled is True


def test_an_unknown_delimiter_is_refused_with_a_hint(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id|name\nx|y\n")
    status, _, err = cli("provision", "companies", "in.csv")
    assert status == 2
    assert "unknown column 'id|name'" in err
    assert "separated by ',', ';' or a tab" in err


def test_only_trailing_flags_may_be_left_out(cli: Any, served: FakeConduit, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,name,page_enabled\ntrail1,T\ntrail2\n")
    status, _, _ = cli("provision", "companies", "in.csv", "--out", "r.jsonl")
    assert status == 1
    by_line = {r["line"]: r for r in records(tmp_path / "r.jsonl")}
    assert by_line[2]["outcome"] == "created"
    assert "missing 'name'" in by_line[3]["error"]["message"]


def test_an_empty_input_says_so(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "blank.csv").write_text("\n \n")
    (tmp_path / "header.csv").write_text("id,name\n\n")
    (tmp_path / "empty.jsonl").write_text("\n")
    expected = {
        "empty.csv": "empty.csv is empty: nothing to provision",
        "blank.csv": "blank.csv has no header row: nothing to provision",
        "header.csv": "header.csv holds only a header row: nothing to provision",
        "empty.jsonl": "empty.jsonl holds no rows: nothing to provision",
    }
    for name, message in expected.items():
        status, out, err = cli("provision", "companies", name)
        assert status == 2, (name, err)
        assert err == f"conduit-async: error: {message}\n"
        assert out == ""


def test_a_failed_workspace_row_keeps_its_name(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "ws.csv").write_text("name,ext_id\nKept name,\nTwin,keepws1\nTwin 2,keepws1\n")
    status, _, _ = cli("provision", "workspaces", "ws.csv", "--out", "r.jsonl")
    assert status == 1
    by_line = {r["line"]: r for r in records(tmp_path / "r.jsonl")}
    assert by_line[2]["name"] == "Kept name" and by_line[2]["outcome"] == "failed"
    assert by_line[3]["outcome"] == "created"
    assert by_line[4]["name"] == "Twin 2"
    assert by_line[4]["error"]["message"] == "ext_id: duplicate of line 3"


async def test_a_spec_with_a_strange_line_is_still_checked_for_duplicates(
    conduit: Conduit,
) -> None:
    rows: list[Any] = [CompanySpec("odd1", line="7"), CompanySpec("ODD1", line=1 << 70)]  # type: ignore[arg-type]
    results = [r async for r in conduit.companies.provision(rows, concurrency=1)]
    assert [r.outcome for r in results] == ["created", "failed"]
    assert str(results[1].error) == "id: duplicate of row 1"
