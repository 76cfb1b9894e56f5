"""What to do after each attempt of a request: pure decisions, no I/O.

`decide` looks at one attempt's outcome (a status, or a transport failure and
whether the request may have reached the server), the attempt number, the
route and the policy, and answers with one `Decision`. The session only
carries decisions out, so every rule is tested as a table, without a network
(tests/test_decide.py), as gidgethub tests its `sansio` module.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import re
from collections.abc import Awaitable, Callable
from datetime import timezone
from email.utils import parsedate_to_datetime

import attrs

__all__ = [
    "Attempt",
    "Decision",
    "Done",
    "Pause",
    "Raise",
    "Reconcile",
    "RefreshToken",
    "Retry",
    "RetryPolicy",
    "decide",
    "http_date",
    "parse_retry_after",
]

Sleep = Callable[[float], Awaitable[None]]

# delta-seconds is digits (RFC 9110); a decimal fraction is tolerated.
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, not {value!r}")


def _optional_non_negative(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None:
        _non_negative(instance, attribute, value)  # type: ignore[arg-type]


@attrs.frozen
class RetryPolicy:
    """How the session retries a failed request.

    `attempts` counts every try, the first included (3 means up to 2 retries).
    Delays grow as `base_delay * 2**n` up to `max_delay`, with full jitter, so
    that many clients that failed together do not retry together. A
    `Retry-After` from the server replaces the computed delay, capped at
    `max_retry_after` seconds.

    `max_wait` bounds the seconds one call may spend waiting (backoff, a
    429's pause) before it gives up with the last error, e.g. a
    `RateLimitError` carrying `retry_after`: right for a request a person is
    waiting on, where failing fast beats sleeping. Such a call does not
    queue behind a pause longer than its budget that another call's 429
    imposed: it is sent at once. None: no bound.

    `settle_delay` is how long a create that timed out is given to land
    before it is looked for again (None: the client's request timeout), so a
    stalled request is never taken for one that was not applied.

    `sleep` is what waits (inject a virtual clock's sleep in tests);
    `jitter` draws from [0, 1).
    """

    attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)
    max_wait: float | None = attrs.field(default=None, validator=_optional_non_negative)
    settle_delay: float | None = attrs.field(default=None, validator=_optional_non_negative)
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


# -- decisions -------------------------------------------------------------------------


@attrs.frozen
class Attempt:
    """What one attempt of a request came to, as far as deciding the next step goes.

    `status` is the HTTP status, or None when no response came (a transport
    failure); `sent` is False only when the request certainly never reached
    the server (a refused connection). `retry_after` is the server's wish in
    seconds, parsed. `number` counts attempts from 1 (token refreshes do not
    count). `unknown`: an earlier attempt's outcome was lost, so this
    non-idempotent request may already have been applied. `token_refreshed`:
    this request has already been retried once with a fresh token.
    `waited`: seconds this call has already spent waiting.
    """

    number: int
    status: int | None = None
    sent: bool = True
    retry_after: float | None = None
    unknown: bool = False
    token_refreshed: bool = False
    waited: float = 0.0


@attrs.frozen
class Done:
    """The call succeeded (or, for a DELETE, its lost attempt already did the work)."""


@attrs.frozen
class Raise:
    """Give up with this attempt's error; `unknown`: as an `OutcomeUnknownError`."""

    unknown: bool = False


@attrs.frozen
class Retry:
    """Send the request again after `delay` seconds."""

    delay: float


@attrs.frozen
class Pause:
    """A 429: hold every request of the client for `delay` seconds, then send again."""

    delay: float


@attrs.frozen
class RefreshToken:
    """A 401: drop the refused token and send once more with a fresh one (not a retry)."""


@attrs.frozen
class Reconcile:
    """The request may have been applied: look for what it made. If found, that is
    the result; if not, carry out `then` (a retry is safe only because the lookup
    came first)."""

    then: Retry | Pause | Raise


Decision = Done | Raise | Retry | Pause | RefreshToken | Reconcile

_DONE = Done()
_RAISE = Raise()
_RAISE_UNKNOWN = Raise(unknown=True)
_REFRESH = RefreshToken()


def decide(
    attempt: Attempt,
    policy: RetryPolicy,
    *,
    method: str,
    idempotent: bool,
    can_reconcile: bool,
) -> Decision:
    """The next step after `attempt` of a `method` request.

    GET and DELETE, and POSTs marked `idempotent`, are retried on transport
    failures and the policy's statuses. Any other POST is retried only when
    it certainly did not reach the server (a refused connection, a 429);
    when it may have been applied (sent, then no answer, or a status the
    policy retries, such as a 502) it is
    reconciled (`can_reconcile`) or reported as an unknown outcome. A 409
    after an unknown outcome may be the lost attempt's work: reconciled too.
    A 404 to a retried DELETE after an unknown outcome means the lost
    attempt deleted it. Retries stop after `policy.attempts`, or when the
    next wait would overrun `policy.max_wait`.
    """
    status = attempt.status
    if status is not None:
        if 200 <= status < 300:
            return _DONE
        if status == 401:
            return _RAISE if attempt.token_refreshed else _REFRESH
        if attempt.unknown:
            if status == 404 and method == "DELETE":
                return _DONE
            if status == 409 and not idempotent:
                return Reconcile(_RAISE) if can_reconcile else _RAISE_UNKNOWN
        if status not in policy.retry_statuses:
            return _RAISE
        maybe_applied = status != 429
    else:
        maybe_applied = attempt.sent
    then = _next_try(attempt, policy)
    if maybe_applied and not idempotent:
        return Reconcile(then) if can_reconcile else _RAISE_UNKNOWN
    return then


def _next_try(attempt: Attempt, policy: RetryPolicy) -> Retry | Pause | Raise:
    if attempt.number >= policy.attempts:
        return _RAISE
    delay = policy.delay(attempt.number, attempt.retry_after)
    if policy.max_wait is not None and attempt.waited + delay > policy.max_wait:
        return _RAISE
    return Pause(delay) if attempt.status == 429 else Retry(delay)


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
    when = http_date(text)
    return None if when is None else max(0.0, when - now)


@functools.lru_cache(maxsize=16)
def http_date(text: str) -> float | None:
    """An HTTP date (a `Date` or `Retry-After` header) in Unix seconds, or None if unreadable
    or of an unknown time zone.

    Cached: the `Date` header changes once a second, while a batch reads it
    thousands of times.
    """
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # asctime-date ("Sun Nov  6 08:49:37 1994") has no zone and is GMT by definition
        # (RFC 9110 5.6.7); RFC 5322's "-0000" says the zone is unknown.
        if "-0000" in text or "," in text:  # an RFC 1123 date that lost its zone
            return None
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
