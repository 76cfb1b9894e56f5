"""Test-suite options (the size of the fault soak, where its figures are reported) and the
fixtures the core unit tests share.

The `soak` tests run in the default run at a size that takes seconds;
`pytest --soak-size 10000` runs them bigger, `--soak-size 0` skips them
(or deselect them with `-m "not soak"`). Their figures (rows, faults
injected per kind, retries, outcomes, elapsed) are printed in a "soak report"
section at the end of the run, with or without `-s`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from core_support import Recorder, VirtualTime, make_conduit

DEFAULT_SOAK_SIZE = 2000

_REPORTS = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-size",
        type=int,
        default=DEFAULT_SOAK_SIZE,
        metavar="N",
        help=f"companies per fault soak test (default {DEFAULT_SOAK_SIZE}; 0 skips them)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORTS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak-size") > 0:
        return
    skip = pytest.mark.skip(reason="soak tests skipped with --soak-size 0")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)


@pytest.fixture
def soak_size(request: pytest.FixtureRequest) -> int:
    """How many companies a soak test provisions (`--soak-size`)."""
    size: int = request.config.getoption("--soak-size")
    return size


@pytest.fixture
def soak_report(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the soak test fills with its figures; printed at the end of the run and
    kept as the test's `record_property("soak", ...)` (so it reaches JUnit XML too)."""
    figures: dict[str, Any] = {}
    request.config.stash[_REPORTS].append((request.node.nodeid, figures))
    yield figures
    request.node.user_properties.append(("soak", figures))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    reports = [(node, figures) for node, figures in config.stash.get(_REPORTS, []) if figures]
    if not reports:
        return
    terminalreporter.section("soak report")
    for node, figures in reports:
        terminalreporter.write_line(node)
        for key, value in figures.items():
            terminalreporter.write_line(f"  {key}: {value}")


# -- fixtures of the core unit tests (aioresponses, virtual time) ------------------------


@pytest.fixture
def vt() -> VirtualTime:
    """Virtual time: the client's clock and its retry policy's sleep."""
    return VirtualTime()


@pytest.fixture
def http() -> Iterator[Recorder]:
    """aioresponses, recording every request in order."""
    with Recorder() as m:
        yield m


@pytest.fixture
async def conduit(vt: VirtualTime, http: Recorder) -> Any:
    """A `Conduit` on virtual time whose HTTP goes to `http`."""
    async with make_conduit(vt) as c:
        yield c
