"""A circuit breaker for the shared store: a dead Redis costs no latency per call.

A refused or dropped connection opens the breaker at once: no Redis operation is
tried until a backoff (doubling, capped) has passed; the next one then probes.
A timeout is different: one slow answer is a blip, not an outage, and opening on
it would make the store flap (and drop its pooled connections) under a merely
busy Redis. Timeouts open the breaker once they have gone on for `slow_after`
seconds with no operation succeeding in between: a Redis that has stopped
answering costs a few seconds of timeouts, then nothing. Each outage is logged
once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["Breaker"]

log = logging.getLogger("conduit_async.stores")


class Breaker:
    """Open after a failure (or `slow_after` seconds of timeouts with no success),
    half-open after `backoff`, closed after a success. Times are `now()`'s (seconds)."""

    __slots__ = (
        "_backoff",
        "_failures",
        "_open_until",
        "_slow_since",
        "first_backoff",
        "max_backoff",
        "now",
        "slow_after",
    )

    def __init__(
        self,
        *,
        first_backoff: float = 0.5,
        max_backoff: float = 5.0,
        slow_after: float = 3.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.slow_after = slow_after
        self.now = now
        self._open_until = 0.0
        self._failures = 0
        self._backoff = first_backoff
        #: When the current run of timeouts began (None: the last operation succeeded).
        self._slow_since: float | None = None

    @property
    def down(self) -> bool:
        """True while an outage is under way (failures not yet followed by a success)."""
        return self._failures > 0

    def allows(self) -> bool:
        """False while open: callers skip Redis and carry on without it."""
        return self._failures == 0 or self.now() >= self._open_until

    def retry_in(self) -> float:
        """Seconds until the next probe is allowed (0 when closed or half-open)."""
        return max(0.0, self._open_until - self.now()) if self._failures else 0.0

    def timed_out(self, what: str, exc: BaseException) -> bool:
        """Record an operation that took too long; True if it starts an outage.

        Opens only once timeouts have gone on for `slow_after` seconds without a
        success; while the breaker is already open (a probe), it stays open."""
        if self._failures:
            return self.failed(what, exc)
        now = self.now()
        if self._slow_since is None:
            self._slow_since = now
            return False
        if now - self._slow_since < self.slow_after:
            return False
        return self.failed(what, exc)

    def failed(self, what: str, exc: BaseException) -> bool:
        """Record a failure; True if it starts an outage (the caller counts it)."""
        starts = self._failures == 0
        self._slow_since = None
        self._failures += 1
        self._backoff = self.first_backoff if starts else min(self._backoff * 2, self.max_backoff)
        self._open_until = self.now() + self._backoff
        if starts:
            log.warning(
                "shared token store unavailable (%s during %s); carrying on with this "
                "process's own cache and fetches, retrying in the background",
                type(exc).__name__,
                what,
            )
        return starts

    def succeeded(self) -> None:
        if self._failures:
            log.info("shared token store is back after %d failed attempts", self._failures)
        self._failures = 0
        self._backoff = self.first_backoff
        self._slow_since = None
