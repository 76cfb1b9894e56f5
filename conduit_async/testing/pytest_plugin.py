"""pytest fixtures for testing an application that uses conduit-async.

Installed with the package (entry point `pytest11`), so a user's test suite
gets, with no configuration:

- `conduit_clock`: a `ManualClock` shared by the fake server and the client;
  advance it to make tokens expire without waiting.
- `conduit_fake`: a running `FakeConduit` on a free loopback port.
- `conduit_client`: a `Conduit` connected to it, whose retries sleep on the
  manual clock (so they never really wait), closed after the test.

`conduit_fake` and `conduit_client` are async fixtures and need pytest-asyncio
(active, with `asyncio_mode = "auto"` or marked tests). Without it they are still
defined, and fail at set-up with a message that says what to install and
configure: a bare "fixture not found" would leave the user guessing. The choice
is made once pytest knows its plugins (`pytest_configure`), so `-p no:asyncio`
counts as absent. `conduit_clock` is synchronous and needs nothing.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from typing import NoReturn

import pytest

from .._retry import RetryPolicy
from ..client import Conduit
from . import FakeConduit, ManualClock


def needs_pytest_asyncio(fixture: str) -> str:
    """Why the async fixture `fixture` could not be set up, and what to do about it."""
    return (
        f"the {fixture} fixture is async and needs the pytest-asyncio plugin, which is not "
        "installed or was disabled (-p no:asyncio): `pip install pytest-asyncio`, then set "
        'asyncio_mode = "auto" under [tool.pytest.ini_options] in pyproject.toml (or mark '
        "the tests @pytest.mark.asyncio)"
    )


@pytest.fixture
def conduit_clock() -> ManualClock:
    """The virtual clock shared by `conduit_fake` and `conduit_client`."""
    return ManualClock()


def _pytest_asyncio_active(config: pytest.Config) -> bool:
    """Whether pytest-asyncio's plugin module is registered, by its entry point (named
    "asyncio", so `-p no:asyncio` keeps it out) or by a `pytest_plugins` line."""
    return any(
        getattr(plugin, "__name__", None) == "pytest_asyncio.plugin"
        for plugin in config.pluginmanager.get_plugins()
    )


def _async_fixtures() -> dict[str, object]:
    """The real fixtures, defined only once pytest-asyncio is known to be there."""
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def conduit_fake(conduit_clock: ManualClock) -> AsyncIterator[FakeConduit]:
        """An embedded fake Conduit server on a free loopback port."""
        async with FakeConduit(clock=conduit_clock) as fake:
            yield fake

    @pytest_asyncio.fixture
    async def conduit_client(
        conduit_fake: FakeConduit, conduit_clock: ManualClock
    ) -> AsyncIterator[Conduit]:
        """A `Conduit` talking to `conduit_fake`, sharing its clock."""
        async with conduit_fake.client(
            clock=conduit_clock, retry=RetryPolicy(sleep=conduit_clock.sleep), seed=0
        ) as client:
            yield client

    return {"conduit_fake": conduit_fake, "conduit_client": conduit_client}


def _missing_pytest_asyncio() -> dict[str, object]:
    """Stand-ins that fail with `needs_pytest_asyncio` when a test asks for them."""

    @pytest.fixture
    def conduit_fake() -> NoReturn:
        """Needs pytest-asyncio, not active in this run: fails saying how to get it."""
        pytest.fail(needs_pytest_asyncio("conduit_fake"), pytrace=False)

    @pytest.fixture
    def conduit_client() -> NoReturn:
        """Needs pytest-asyncio, not active in this run: fails saying how to get it."""
        pytest.fail(needs_pytest_asyncio("conduit_client"), pytrace=False)

    return {"conduit_fake": conduit_fake, "conduit_client": conduit_client}


def pytest_configure(config: pytest.Config) -> None:
    # A plugin is a namespace pytest scans for fixtures; a module object is the kind
    # every pytest version scans the same way.
    fixtures = types.ModuleType(f"{__name__}.async_fixtures")
    made = _async_fixtures() if _pytest_asyncio_active(config) else _missing_pytest_asyncio()
    vars(fixtures).update(made)
    config.pluginmanager.register(fixtures, fixtures.__name__)
