"""pytest fixtures for testing an application that uses conduit-async.

Installed with the package (entry point `pytest11`), so a user's test suite
gets, with no configuration:

- `conduit_clock`: a `ManualClock` shared by the fake server and the client;
  advance it to make tokens expire without waiting.
- `conduit_fake`: a running `FakeConduit` on a free loopback port.
- `conduit_client`: a `Conduit` connected to it, whose retries sleep on the
  manual clock (so they never really wait), closed after the test.

The fixtures need pytest-asyncio; without it they are not defined, rather
than breaking the user's pytest.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

from .._retry import RetryPolicy
from ..client import Conduit
from . import FakeConduit, ManualClock

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest.fixture
    def conduit_clock() -> ManualClock:
        """The virtual clock shared by `conduit_fake` and `conduit_client`."""
        return ManualClock()

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
        async with Conduit(
            token=conduit_fake.org_token,
            link_token=conduit_fake.link_token,
            base_url=conduit_fake.base_url,
            link_base_url=conduit_fake.link_base_url,
            clock=conduit_clock,
            retry=RetryPolicy(sleep=conduit_clock.sleep),
            seed=0,
        ) as client:
            yield client
