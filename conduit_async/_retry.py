"""When to retry and how long to wait: pure decisions, no I/O.

The session asks these questions; the answers depend only on the policy, the
attempt number, the status and the `Retry-After` header, so they are tested
without a network.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime

import attrs

__all__ = ["RetryPolicy", "parse_retry_after"]

Sleep = Callable[[float], Awaitable[None]]

# delta-seconds is digits (RFC 9110); a decimal fraction is tolerated.
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, not {value!r}")


@attrs.frozen
class RetryPolicy:
    """How the session retries a failed request.

    `attempts` counts every try, the first included (3 means up to 2 retries).
    Delays grow as `base_delay * 2**n` up to `max_delay`, with full jitter, so
    that many clients that failed together do not retry together. A
    `Retry-After` from the server replaces the computed delay, capped at
    `max_retry_after` seconds. `sleep` is what waits (inject a virtual clock's
    sleep in tests); `jitter` draws from [0, 1).
    """

    attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.5, validator=_positive)
    max_delay: float = attrs.field(default=8.0, validator=_positive)
    max_retry_after: float = attrs.field(default=60.0, validator=_positive)
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    sleep: Sleep = attrs.field(default=asyncio.sleep, eq=False, repr=False)
    jitter: Callable[[], float] = attrs.field(default=random.random, eq=False, repr=False)

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that tries once: for callers that run their own retries."""
        return cls(attempts=1)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        # The exponent is bounded: 2.0 ** 1024 overflows, and any cap is reached long before.
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(max(0, retry - 1), 1000))
        return ceiling * float(self.jitter())

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry `retry`: the server's wish if it gave one
        (capped), else the jittered backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(retry)

    def retries_status(self, status: int) -> bool:
        return status in self.retry_statuses


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header, or None when absent or unreadable.

    Accepts delta-seconds (decimals tolerated) and HTTP dates (a date in the
    past means "now": 0). Negative, infinite and garbage values give None, so
    the caller falls back to its own backoff rather than trusting nonsense.
    `now` is Unix seconds, for dates.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)  # an absurdly long one is inf, which the policy caps
    if text[0] in "+-0123456789.":
        return None  # a number, but not a delta-seconds: negative, exponent, "1_000"...
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
