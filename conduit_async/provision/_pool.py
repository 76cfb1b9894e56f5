"""The engine of bulk provisioning: a fixed pool of workers over one shared row iterator.

Why not `gather` over a task per row: a million rows would be a million tasks
and a million rows in memory before the first request. Here `concurrency`
workers pull rows one at a time from the same iterator, and a row is pulled
only when a *slot* is free. A slot is held from the moment a row is pulled
until its result has been handed to the consumer, so rows read but not yet
reported never exceed `concurrency`, however slow the consumer is.

Results travel through a queue that the slots bound. When the consumer stops
(`break`, `aclose()`, cancellation) the generator's `finally` cancels the
workers and waits for them: nothing is left pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import Generic, TypeVar

import attrs

from .._retry import RetryPolicy
from ..errors import (
    APIStatusError,
    AuthenticationError,
    ClientClosedError,
    ConduitError,
    ConfigurationError,
    OutcomeUnknownError,
    RateLimitError,
    ServerError,
    TransportError,
)

__all__ = ["FATAL", "Rows", "is_transient", "retrying", "run_pool"]

T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X")

#: Any iterable or async iterable of rows.
Rows = Iterable[T] | AsyncIterable[T]

#: Errors that no row can escape (a missing or refused API token, a closed client):
#: they stop the batch instead of failing every remaining row the same way.
FATAL = (ConfigurationError, ClientClosedError, AuthenticationError)


class _Done:
    """A worker's last message: it has stopped (input exhausted, or cancelled)."""


@attrs.frozen
class _Crash:
    """A worker met an exception that is not about one row: the whole batch must stop."""

    error: Exception


_DONE = _Done()
_END = object()


class _Source(Generic[T]):
    """One iterator shared by every worker.

    A sync iterator needs no lock (`next()` never yields to the loop); an
    async one does, because an async generator refuses a second `anext()`
    while one is under way.
    """

    def __init__(self, rows: Rows[T]) -> None:
        self._async = aiter(rows) if isinstance(rows, AsyncIterable) else None
        self._sync = iter(rows) if self._async is None else None  # type: ignore[arg-type]
        self._lock = asyncio.Lock()
        self.exhausted = False

    async def pull(self) -> T | object:
        """The next row, or `_END` once the input is exhausted (for every caller after that)."""
        if self.exhausted:
            return _END
        if self._sync is not None:
            row = next(self._sync, _END)
        else:
            assert self._async is not None
            async with self._lock:
                if self.exhausted:
                    return _END
                row = await anext(self._async, _END)
        if row is _END:
            self.exhausted = True
        return row


async def run_pool(
    rows: Rows[T], work: Callable[[T], Awaitable[R]], concurrency: int
) -> AsyncGenerator[R, None]:
    """Yield `await work(row)` for every row, as each finishes, `concurrency` at a time.

    `work` must turn row-level problems into results; anything it raises
    (other than cancellation), and anything the row iterator raises, stops
    the batch and is raised here, after the other workers are cancelled.
    """
    source = _Source(rows)
    slots = asyncio.Semaphore(concurrency)
    results: asyncio.Queue[R | _Done | _Crash] = asyncio.Queue()

    async def worker() -> None:
        try:
            while True:
                await slots.acquire()
                row = await source.pull()
                if row is _END:
                    slots.release()
                    return
                results.put_nowait(await work(row))  # type: ignore[arg-type]
        except Exception as exc:  # handed to the consumer, which raises it
            results.put_nowait(_Crash(exc))
        finally:
            results.put_nowait(_DONE)

    loop = asyncio.get_running_loop()
    workers = [
        loop.create_task(worker(), name=f"conduit-provision-{n}") for n in range(concurrency)
    ]
    live = len(workers)
    try:
        while live:
            item = await results.get()
            if isinstance(item, _Done):
                live -= 1
            elif isinstance(item, _Crash):
                raise item.error
            else:
                slots.release()
                yield item
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def is_transient(error: ConduitError) -> bool:
    """Whether trying the row again later may succeed: rate limits, server trouble,
    network failures, and creates whose outcome was lost (every provisioning step
    looks before it creates again, so a retry never duplicates)."""
    if isinstance(error, (RateLimitError, ServerError, TransportError, OutcomeUnknownError)):
        return True
    return isinstance(error, APIStatusError) and error.status == 408


async def retrying(
    attempt: Callable[[int], Awaitable[X]], retries: int, policy: RetryPolicy
) -> tuple[X | ConduitError, int]:
    """Run `attempt(n)` until it succeeds, fails for good, or `retries` more tries are spent.

    Returns the value or the last error, and the number of tries; `FATAL`
    errors are raised, to stop the batch. The waits
    carry on the session's own backoff schedule (its requests have already
    retried `policy.attempts` times), with its sleep, so tests never wait.
    """
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt(tries), tries
        except ConduitError as error:
            if isinstance(error, FATAL):
                raise
            if tries > retries or not is_transient(error):
                return error, tries
            await policy.sleep(policy.backoff(policy.attempts + tries - 1))
