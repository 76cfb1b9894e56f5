"""A clock that only moves when told to, shared by the fake server and the SDK under test.

Company tokens live ten minutes and retry policies wait seconds between attempts; a test
that used real time would be slow or flaky. Handing one :class:`ManualClock` to both
:class:`~conduit_async.testing.FakeConduit` and the SDK lets a test jump past a token's
expiry, or through a whole retry schedule, in microseconds, with both sides agreeing on
what time it is.
"""

from __future__ import annotations

import asyncio

__all__ = ["ManualClock"]


class ManualClock:
    """Unix time in seconds that advances only through :meth:`advance`, :meth:`set` and
    :meth:`sleep`.

    Call the instance to read it (it is a ``Callable[[], float]``, the shape
    ``time.time`` has). :meth:`sleep` is a drop-in for ``asyncio.sleep`` in code that
    takes an injectable sleep, such as a retry policy: it moves the clock forward instead
    of waiting.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward; ``ValueError`` for a negative step (use :meth:`set`
        to go back on purpose)."""
        if seconds < 0:
            raise ValueError(f"cannot advance a clock by a negative amount ({seconds!r})")
        self._now += seconds

    def set(self, t: float) -> None:
        """Jump to an absolute Unix time, backwards included."""
        self._now = float(t)

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` (nothing for zero or less, as ``asyncio.sleep`` would
        return at once), then yield to the event loop once so other tasks still get to
        run between retries."""
        if seconds > 0:
            self._now += seconds
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
