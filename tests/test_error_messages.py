"""Errors that say what the user did: the call they made, the kind of token they sent;
and the aiohttp trace configs they pass reach the session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from conduit_async import Conduit, PermissionDeniedError, TransportError
from conduit_async.testing import FakeConduit, Fault, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeConduit]:
    async with FakeConduit(clock=clock) as server:
        yield server


def client(fake: FakeConduit, clock: ManualClock, **options: Any) -> Conduit:
    return fake.client(**options)


async def test_a_failed_token_fetch_names_the_call_the_user_made(
    fake: FakeConduit, clock: ManualClock
) -> None:
    fake.add_company("beta2")
    fake.faults.script("GET /link/company/{cid}/", [Fault.reset()] * 3)
    async with client(fake, clock) as conduit:
        with pytest.raises(TransportError) as caught:
            await conduit.company("beta2").integrations()
    message = str(caught.value)
    assert caught.value.endpoint == "GET /link/credentials/"
    assert message.startswith("GET /link/credentials/: could not get a token for this call")
    assert "{cid}" not in message


async def test_a_link_token_on_a_v2_call_is_called_the_wrong_kind_first(
    fake: FakeConduit, clock: ManualClock
) -> None:
    async with client(fake, clock, token=fake.link_token) as conduit:
        with pytest.raises(PermissionDeniedError) as caught:
            await conduit.workspaces.list()
    assert caught.value.hint is not None
    assert caught.value.hint.startswith("the token may be of the wrong kind")
    assert "organization name may not be configured" not in caught.value.hint
    assert fake.link_token not in str(caught.value)


async def test_trace_configs_reach_the_session(fake: FakeConduit, clock: ManualClock) -> None:
    seen: list[str] = []

    async def on_request_start(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        seen.append(f"{params.method} {params.url.path}")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with client(fake, clock, trace_configs=[trace]) as conduit:
        await conduit.workspaces.list()
    assert seen == ["GET /v2/workspaces/"]
