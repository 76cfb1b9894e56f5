"""Single flight: concurrent callers that need the same fetch share one.

The fetch is a task owned by this helper, not by any caller: a caller that is
cancelled leaves it running for the others, and one whose callers all left
still finishes (and fills the cache). Closing cancels the fetches under way;
whoever was waiting on one gets `ClientClosedError`, and their own tasks are
not cancelled (nobody cancelled them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from ..errors import ClientClosedError

__all__ = ["KeyedLock", "SingleFlight"]

T = TypeVar("T")

_CLOSED = "the Conduit client was closed while this call waited for a token"


class SingleFlight:
    """At most one task per key; `run` joins it or starts it, `start` starts one in the
    background."""

    __slots__ = ("_closed", "_tasks")

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._closed = False

    def running(self, key: str) -> bool:
        return key in self._tasks

    async def run(self, key: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The result of the task under way for `key`, or of `work()` started as that task.

        Cancelling this caller never cancels the task; the task's own failure
        reaches every caller; a task cancelled by `aclose` is `ClientClosedError`.
        """
        task = self._tasks.get(key)
        if task is None:
            task = self.start(key, work)
        # wait, not shield: only the caller's own cancellation may raise CancelledError here.
        await asyncio.wait((task,))
        if task.cancelled():
            raise ClientClosedError(_CLOSED)
        result: T = task.result()
        return result

    def start(self, key: str, work: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """Start `work()` as the task for `key` (none may be under way)."""
        if self._closed:
            raise ClientClosedError("the token broker is closed; create a new Conduit client")
        task = asyncio.get_running_loop().create_task(work(), name=f"conduit-token:{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._finished(key, t))
        return task

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved, so a fetch nobody awaited never warns

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """Tasks under way now."""
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel the tasks under way and wait for them: nothing is left pending."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()


class KeyedLock:
    """One lock per key, kept only while someone holds or awaits it: serialises work on
    one key (creating the workspace of one ext_id) without a lock per key ever made."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]
