"""The engine of bulk provisioning: a fixed pool of workers over one shared row iterator.

Why not `gather` over a task per row: a million rows would be a million tasks
and a million rows in memory before the first request. Here `concurrency`
workers pull rows one at a time from the same iterator, and a row is pulled
only when a *slot* is free. A slot is taken when a row is pulled and given
back when its result has been handed to the consumer, so rows read but not
yet reported never exceed `concurrency`, however slow the consumer is.

Finished results wait in a deque; the consumer sleeps on one future while it
is empty, and workers with no free slot sleep on one shared future until the
consumer gives slots back: no queue, semaphore or future per row.

When the consumer stops (`aclose()`, which `contextlib.aclosing` calls, or
cancellation, or the generator being dropped and finalized) the generator's
`finally` cancels the workers and waits for them: nothing is left pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

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
    ValidationError,
)

if TYPE_CHECKING:
    from ..client import Conduit

__all__ = ["FATAL", "Rows", "check_pool_args", "is_transient", "retrying", "run_pool"]

log = logging.getLogger("conduit_async.provision")

#: Rows in flight at once, by default: companies are one request each, workspaces (with
#: clones and share URLs) several, so fewer of them at once keep the request rate alike.
COMPANY_CONCURRENCY = 64
WORKSPACE_CONCURRENCY = 16
#: Row-level tries after the first, on top of each request's own retries.
ROW_RETRIES = 2

T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X")

#: Any iterable or async iterable of rows.
Rows = Iterable[T] | AsyncIterable[T]

#: Errors that no row can escape (a missing or refused API token, a closed client):
#: they stop the batch instead of failing every remaining row the same way.
FATAL = (ConfigurationError, ClientClosedError, AuthenticationError)

_END = object()


def check_pool_args(conduit: Conduit, concurrency: int, retries: int) -> None:
    """Refuse nonsense at call time, and warn when the connector would throttle the pool."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"must be a positive integer, not {concurrency!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValidationError("retries", f"must be an integer >= 0, not {retries!r}")
    limit = conduit.max_connections
    if limit and concurrency > limit:
        # A log record, not warnings.warn: it is advice about a run, not about the code.
        log.warning(
            "concurrency %d is above the client's max_connections %d: the extra workers "
            "will wait for a free connection; create the Conduit with max_connections=%d",
            concurrency,
            limit,
            concurrency,
        )


async def run_pool(
    rows: Rows[T], work: Callable[[T, int], Awaitable[R]], concurrency: int
) -> AsyncGenerator[R, None]:
    """Yield `await work(row, n)` for every row (`n` counts rows from 1), as each finishes,
    `concurrency` at a time.

    Rows are handed to `work` in input order, and a worker runs `work`'s
    synchronous start (up to its first suspension) before the next row is
    pulled: what `work` decides there (a duplicate key) follows the input's
    order, never timing. `work` must turn row-level problems into results;
    anything it raises (other than cancellation), and anything the row
    iterator raises, stops the batch and is raised here, after the other
    workers are cancelled.
    """
    loop = asyncio.get_running_loop()
    sync_rows = None if isinstance(rows, AsyncIterable) else iter(rows)
    async_rows = aiter(rows) if isinstance(rows, AsyncIterable) else None
    # An async generator refuses a second `anext()` while one is under way.
    reading = asyncio.Lock()
    exhausted = False
    pulled = 0
    free = concurrency  # slots: rows that may still be read before one is reported
    ready: deque[R] = deque()
    live = concurrency  # workers not yet ended
    crash: Exception | None = None
    # The consumer's sleep while `ready` is empty, and the workers' sleep while no slot
    # is free; each set once to wake every sleeper, then replaced.
    results_waiter: asyncio.Future[None] | None = None
    room: asyncio.Future[None] | None = None

    def wake_consumer() -> None:
        nonlocal results_waiter
        if results_waiter is not None:
            if not results_waiter.done():
                results_waiter.set_result(None)
            results_waiter = None

    async def next_row() -> object:
        nonlocal exhausted
        assert async_rows is not None
        async with reading:
            if exhausted:
                return _END
            row = await anext(async_rows, _END)
        if row is _END:
            exhausted = True
        return row

    async def worker() -> None:
        nonlocal free, room, exhausted, pulled, live, crash
        try:
            while True:
                while not free:
                    if room is None:
                        room = loop.create_future()
                    await room
                if exhausted:
                    return
                free -= 1
                if sync_rows is not None:
                    row = next(sync_rows, _END)
                    if row is _END:
                        exhausted = True
                else:
                    row = await next_row()
                if row is _END:
                    free += 1
                    return
                pulled += 1
                ready.append(await work(row, pulled))  # type: ignore[arg-type]
                wake_consumer()
        except Exception as exc:  # handed to the consumer, which raises it
            if crash is None:
                crash = exc
        finally:
            live -= 1
            wake_consumer()

    workers = [
        loop.create_task(worker(), name=f"conduit-provision-{n}") for n in range(concurrency)
    ]
    try:
        while True:
            while ready:
                yield ready.popleft()
                free += 1
                if room is not None:
                    if not room.done():
                        room.set_result(None)
                    room = None
            if crash is not None:
                raise crash
            if not live:
                return
            results_waiter = loop.create_future()
            await results_waiter
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
    attempt: Callable[[int], Awaitable[X]],
    error: ConduitError,
    retries: int,
    policy: RetryPolicy,
) -> tuple[X | ConduitError, int]:
    """After a first try (made inline by the caller, the common case needs nothing more)
    failed with `error`, run `attempt(n)` for tries 2, 3, ... until one succeeds, one fails
    for good, or `retries` more tries are spent.

    Returns the value or the last error, and the number of tries; `FATAL`
    errors are raised, to stop the batch. The waits carry on the session's own
    backoff schedule (its requests have already retried `policy.attempts`
    times), with its sleep, so tests never wait.
    """
    tries = 1
    while True:
        if isinstance(error, FATAL):
            raise error
        if tries > retries or not is_transient(error):
            return error, tries
        await policy.sleep(policy.backoff(policy.attempts + tries - 1))
        tries += 1
        try:
            return await attempt(tries), tries
        except ConduitError as failed:
            error = failed
