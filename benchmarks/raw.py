"""Hand-written clients, the baselines every SDK ratio is taken against.

Each sends what the SDK sends for the same call, so the difference is the SDK's own
work and nothing else: the session's default headers (``User-Agent``, ``Accept``), the
``Authorization`` header, a compact JSON body with ``Content-Type: application/json``,
and each one reads the whole body and parses the JSON answer.

The baseline is the *lean* aiohttp loop (`create_lean`): a fixed set of long-lived
workers pulling ids from one shared iterator, ``await session.request()``, read,
``release()``. `create_tasks` (a task per row behind a semaphore, what the benchmark
compared against before) costs about a third more client instructions per company; it
is kept as a second reference. The httpx loops show what the other popular client costs, with
its default connection limits and with limits sized to the concurrency.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from typing import Any

import aiohttp
import httpx

from .server import ServerInfo

__all__ = [
    "DEFAULT_HEADERS",
    "JSON_HEADERS",
    "LEAN",
    "TASKS",
    "bearer",
    "create_body",
    "create_httpx",
    "create_httpx_default_limits",
    "create_lean",
    "create_one",
    "create_tasks",
    "get_json",
    "httpx_connections",
    "lean_loop",
    "raw_session",
    "sized_limits",
    "tasks_loop",
]

#: The contender names of the two aiohttp loops, as results and tables show them.
LEAN = "aiohttp"
TASKS = "aiohttp (task per row)"

#: What the SDK's session sends on every request.
DEFAULT_HEADERS = {"User-Agent": "conduit-async", "Accept": "application/json"}
#: What the SDK adds to a request that has a body.
JSON_HEADERS = {"Content-Type": "application/json"}
_TIMEOUT = 30.0

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_body(cid: str) -> bytes:
    """The create request's body, as the SDK encodes it (compact JSON)."""
    return _dumps({"id": cid, "name": f"Company {cid}"}).encode()


def raw_session(limit: int, token: str | None = None) -> aiohttp.ClientSession:
    """An aiohttp session configured as the SDK configures its own (connector, timeout,
    default headers); `token`, when given, goes into every request's headers."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300)
    headers = {**DEFAULT_HEADERS, **(bearer(token) if token else {})}
    return aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=_TIMEOUT)
    )


async def create_one(http: aiohttp.ClientSession, url: str, cid: str) -> bool:
    """One create, the lean way: no ``async with``, read, release, parse."""
    resp = await http.request("POST", url, data=create_body(cid), headers=JSON_HEADERS)
    body = await resp.read()
    resp.release()
    data = json.loads(body)
    return resp.status == 200 and data["id"] == cid


async def get_json(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    """One GET, the lean way; raises if the answer is not a 200."""
    resp = await http.request("GET", url, headers=headers)
    body = await resp.read()
    resp.release()
    if resp.status != 200:
        raise RuntimeError(f"raw GET answered {resp.status}: {body[:200]!r}")
    return json.loads(body)


async def lean_loop(
    http: aiohttp.ClientSession, url: str, ids: Iterable[str], concurrency: int
) -> int:
    """`concurrency` long-lived workers pulling ids from one iterator; returns failures."""
    failed = 0
    rows: Iterator[str] = iter(ids)

    async def worker() -> None:
        nonlocal failed
        for cid in rows:
            if not await create_one(http, url, cid):
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


async def tasks_loop(
    http: aiohttp.ClientSession, url: str, ids: Iterable[str], concurrency: int
) -> int:
    """One task per company behind a semaphore (a common way to write it, and costlier)."""
    limit = asyncio.Semaphore(concurrency)

    async def create(cid: str) -> bool:
        async with limit, http.post(url, data=create_body(cid), headers=JSON_HEADERS) as resp:
            data = json.loads(await resp.read())
            return resp.status == 200 and data["id"] == cid

    results = await asyncio.gather(*(create(cid) for cid in ids))
    return results.count(False)


async def create_lean(info: ServerInfo, ids: list[str], concurrency: int) -> int:
    """The lean loop on a session of its own, as a program would run it."""
    async with raw_session(max(64, concurrency), info.link_token) as http:
        return await lean_loop(http, info.link_base_url + "company/", ids, concurrency)


async def create_tasks(info: ServerInfo, ids: list[str], concurrency: int) -> int:
    """The task-per-row loop on a session of its own."""
    async with raw_session(max(64, concurrency), info.link_token) as http:
        return await tasks_loop(http, info.link_base_url + "company/", ids, concurrency)


def _httpx_client(info: ServerInfo, limits: httpx.Limits) -> httpx.AsyncClient:
    headers = {**DEFAULT_HEADERS, **bearer(info.link_token)}
    return httpx.AsyncClient(limits=limits, headers=headers, timeout=_TIMEOUT)


def sized_limits(concurrency: int) -> httpx.Limits:
    """A pool that keeps every connection the workers use alive."""
    n = max(64, concurrency)
    return httpx.Limits(max_connections=n, max_keepalive_connections=n)


async def _create_httpx(
    info: ServerInfo, ids: Iterable[str], concurrency: int, limits: httpx.Limits
) -> int:
    """The lean worker loop on ``httpx.AsyncClient``."""
    url = info.link_base_url + "company/"
    failed = 0
    rows = iter(ids)
    async with _httpx_client(info, limits) as http:

        async def worker() -> None:
            nonlocal failed
            for cid in rows:
                resp = await http.post(url, content=create_body(cid), headers=JSON_HEADERS)
                data = json.loads(resp.content)
                if resp.status_code != 200 or data["id"] != cid:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


async def create_httpx(info: ServerInfo, ids: list[str], concurrency: int) -> int:
    """httpx with its pool sized to the concurrency: every connection is kept alive."""
    return await _create_httpx(info, ids, concurrency, sized_limits(concurrency))


async def create_httpx_default_limits(info: ServerInfo, ids: list[str], concurrency: int) -> int:
    """httpx as it comes: ``httpx.Limits()`` keeps at most 20 idle connections alive."""
    return await _create_httpx(info, ids, concurrency, httpx.Limits())


async def httpx_connections(
    info: ServerInfo, ids: list[str], concurrency: int, limits: httpx.Limits
) -> int:
    """How many TCP connections httpx opens to create `ids` (counted with its trace hook):
    above the concurrency, it is closing and reopening connections."""
    url = info.link_base_url + "company/"
    opened = 0

    async def trace(event: str, _info: dict[str, Any]) -> None:
        nonlocal opened
        if event == "connection.connect_tcp.complete":
            opened += 1

    rows = iter(ids)
    async with _httpx_client(info, limits) as http:

        async def worker() -> None:
            for cid in rows:
                resp = await http.post(
                    url,
                    content=create_body(cid),
                    headers=JSON_HEADERS,
                    extensions={"trace": trace},
                )
                resp.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return opened
