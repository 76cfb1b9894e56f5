"""The contenders of the instruction and CPU benchmarks, each as set-up plus phases.

A contender is an async context manager: entering it builds its client (and, for the
cached-token call, creates the company whose token it uses), and it yields a *phase*
runner, which makes one request per id it is given. Phases can run many times on the
same client, so a benchmark measures the phases and leaves the set-up out.

Pairs, SDK / raw, with the targets of issue 13 (ratios of client work per request):

- ``create``: ``await conduit.companies.create(cid, name=...)`` one after another vs
  the same POST in the lean raw style (`raw.create_one`);
- ``provision``: ``companies.provision`` at concurrency 64 vs the lean worker loop
  (`raw.lean_loop`), and the task-per-row loop as a second reference;
- ``integrations``: ``conduit.company(cid).integrations()`` with the token cached by the
  create vs a raw ``GET /link/credentials/`` with that token pasted into the header;
- ``call``, a reference with no target: the overhead benchmark's call, ``await
  conduit.company(cid).connect_url(1)`` made whole on every call as a web app makes it,
  vs the same raw GET (`overhead.raw_call`), so that the per-call overhead, judged on
  noisy latency, can also be read in instructions.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs

from .bulk import company_rows, connect
from .overhead import raw_call, sdk_call
from .raw import bearer, create_one, get_json, lean_loop, raw_session, tasks_loop
from .server import ServerInfo

__all__ = ["CONTENDERS", "PAIRS", "PROVISION_CONCURRENCY", "Contender", "Pair", "Phase", "names"]

#: Concurrency of the provision pair (the bulk benchmark's).
PROVISION_CONCURRENCY = 64


@attrs.frozen
class Pair:
    """An SDK contender, the raw one it is judged against, and the target ratio."""

    name: str
    sdk: str
    raw: str
    #: The highest SDK / raw ratio that meets the target; None for a pair shown for reference.
    target: float | None
    references: tuple[str, ...] = ()


PAIRS = (
    Pair("create", "sdk.create", "raw.create", 1.05),
    Pair("provision", "sdk.provision", "raw.lean", 1.10, references=("raw.tasks",)),
    Pair("integrations", "sdk.integrations", "raw.integrations", 1.10),
    Pair("call", "sdk.call", "raw.call", None),
)


def names(pairs: tuple[Pair, ...] | list[Pair]) -> list[str]:
    """Every contender the pairs name, each once, in order."""
    found: list[str] = []
    for pair in pairs:
        for name in (pair.sdk, pair.raw, *pair.references):
            if name not in found:
                found.append(name)
    return found


#: Runs one phase: a request per id (fresh ids, so creates never collide).
Phase = Callable[[list[str]], Awaitable[None]]
#: Sets a contender up, yields its phase runner, tears it down.
Contender = Callable[[ServerInfo], AbstractAsyncContextManager[Phase]]


def _check(failed: int) -> None:
    if failed:
        raise RuntimeError(f"{failed} raw creates failed")


@asynccontextmanager
async def _sdk_create(info: ServerInfo) -> AsyncIterator[Phase]:
    async with connect(info) as conduit:

        async def phase(ids: list[str]) -> None:
            for cid in ids:
                await conduit.companies.create(cid, name=f"Company {cid}")

        yield phase


@asynccontextmanager
async def _raw_create(info: ServerInfo) -> AsyncIterator[Phase]:
    url = info.link_base_url + "company/"
    async with raw_session(64, info.link_token) as http:

        async def phase(ids: list[str]) -> None:
            for cid in ids:
                if not await create_one(http, url, cid):
                    raise RuntimeError(f"raw create of {cid} failed")

        yield phase


@asynccontextmanager
async def _sdk_provision(info: ServerInfo) -> AsyncIterator[Phase]:
    async with connect(info) as conduit:

        async def phase(ids: list[str]) -> None:
            rows = company_rows(ids)
            async for result in conduit.companies.provision(
                rows, concurrency=PROVISION_CONCURRENCY
            ):
                if result.outcome != "created":
                    raise RuntimeError(f"a provisioned row came back {result.outcome!r}")

        yield phase


def _raw_loop(loop: Callable[..., Awaitable[int]]) -> Contender:
    @asynccontextmanager
    async def contender(info: ServerInfo) -> AsyncIterator[Phase]:
        url = info.link_base_url + "company/"
        async with raw_session(PROVISION_CONCURRENCY, info.link_token) as http:

            async def phase(ids: list[str]) -> None:
                _check(await loop(http, url, ids, PROVISION_CONCURRENCY))

            yield phase

    return contender


@asynccontextmanager
async def _sdk_integrations(info: ServerInfo) -> AsyncIterator[Phase]:
    async with connect(info) as conduit:
        cid = "INTEGRATIONS" + os.urandom(4).hex()
        await conduit.companies.create(cid, name=f"Company {cid}")  # caches its token
        view = conduit.company(cid)

        async def phase(ids: list[str]) -> None:
            for _ in ids:
                await view.integrations()

        yield phase


@asynccontextmanager
async def _raw_integrations(info: ServerInfo) -> AsyncIterator[Phase]:
    async with raw_session(64) as http:
        cid = "INTEGRATIONS" + os.urandom(4).hex()
        resp = await http.post(
            info.link_base_url + "company/",
            json={"id": cid, "name": f"Company {cid}"},
            headers=bearer(info.link_token),
        )
        token = (await resp.json())["api_token"]["token"]
        url = info.link_base_url + "credentials/"
        headers = bearer(token)

        async def phase(ids: list[str]) -> None:
            for _ in ids:
                await get_json(http, url, headers)

        yield phase


def _call(kind: str) -> Contender:
    """The overhead benchmark's call, one at a time, on a company the SDK created (and so
    holds the token of)."""

    @asynccontextmanager
    async def contender(info: ServerInfo) -> AsyncIterator[Phase]:
        cid = "CALL" + os.urandom(4).hex()
        async with connect(info) as conduit, raw_session(64) as http:
            await conduit.companies.create(cid, name=f"Company {cid}")  # caches its token
            tokens = {cid: await conduit.companies.token(cid)}
            call = sdk_call(conduit) if kind == "sdk" else raw_call(http, info, tokens)

            async def phase(ids: list[str]) -> None:
                for _ in ids:
                    await call(cid)

            yield phase

    return contender


CONTENDERS: dict[str, Contender] = {
    "sdk.create": _sdk_create,
    "raw.create": _raw_create,
    "sdk.provision": _sdk_provision,
    "raw.lean": _raw_loop(lean_loop),
    "raw.tasks": _raw_loop(tasks_loop),
    "sdk.integrations": _sdk_integrations,
    "raw.integrations": _raw_integrations,
    "sdk.call": _call("sdk"),
    "raw.call": _call("raw"),
}
