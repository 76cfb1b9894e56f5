"""A company token's lease: when to refresh it and when to stop sending it (pure maths).

Company tokens live 10 minutes. The broker gives each one three windows, measured
on the local clock from when the request that issued it was sent::

    issued            soft (50% left, jittered)    hard (10% left)     expiry
      |------ fresh: cached -----|--- stale: served, refreshed ---|-- wait --|
                                     in the background (once)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import attrs

from ..errors import ResponseFormatError
from ..models import ApiToken, unchecked

__all__ = ["MAX_COMPANY_TOKEN_LIFETIME", "Clock", "TokenLease", "expired_on_issue", "lease_for"]

#: Unix seconds now; injectable so tests can make ten minutes pass in microseconds.
Clock = Callable[[], float]

#: Conduit documents company tokens as expiring 10 minutes after issue.
MAX_COMPANY_TOKEN_LIFETIME = 600.0


@attrs.frozen(weakref_slot=False)
class TokenLease:
    """A company token with the local times that govern its use.

    Times are on the broker's clock (Unix seconds). `soft_at`: serve it, but
    refresh in the background. `hard_at`: stop serving it; callers wait for a
    new one. `expires_at`: the conservative local estimate of its expiry.
    `server_expires_at` and `server_date` are what the server said (its
    `expires_at` and its `Date` header, Unix seconds), kept to explain a token
    that was dead on arrival.
    """

    token: str = attrs.field(repr=False)
    issued_at: float
    soft_at: float
    hard_at: float
    expires_at: float
    server_expires_at: float | None = None
    server_date: float | None = None

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at

    @property
    def dead(self) -> bool:
        """True when the token had no life left when it was issued: never send it."""
        return self.expires_at <= self.issued_at


def lease_for(
    api_token: ApiToken,
    sent_at: float,
    server_date: float | None,
    jitter: float = 0.0,
    soft_fraction: float = 0.5,
    hard_fraction: float = 0.1,
    max_lifetime: float = MAX_COMPANY_TOKEN_LIFETIME,
) -> TokenLease:
    """When to refresh and stop using a company token, in local time.

    The lifetime is what the server says is left (`expires_at` minus its
    `Date` header, less one second because `Date` is truncated to whole
    seconds), counted from when the request was *sent*: the earliest moment
    the token can have been issued. That cancels any offset between the two
    clocks. It is never more than `max_lifetime` (10 minutes). Without a
    `Date` header the clocks are assumed to agree.

    The margins are fractions of the lifetime, so a 4 s token behaves like a
    600 s one. `jitter` in [0, 1) moves the soft deadline earlier by up to a
    tenth of the lifetime so that companies provisioned together do not all
    refresh together. A token already expired gets a lease with no life
    (`dead`), which the broker never sends.
    """
    server_expiry = api_token.expires_at.timestamp()
    if server_date is not None:
        remaining = server_expiry - server_date - 1.0
    else:
        remaining = server_expiry - sent_at
    lifetime = max_lifetime if remaining > max_lifetime else remaining
    if not lifetime > 0.0:  # NaN too
        lifetime = 0.0
    return _lease(
        api_token.token,
        sent_at,
        sent_at + lifetime * (1.0 - (soft_fraction + 0.1 * jitter)),
        sent_at + lifetime * (1.0 - hard_fraction),
        sent_at + lifetime,
        server_expiry,
        server_date,
    )


# Every lease is built here, once per token issued: without `TokenLease.__init__`'s
# field-by-field `object.__setattr__` (see `unchecked`).
_lease = unchecked(TokenLease)


def expired_on_issue(company_id: str, lease: TokenLease) -> ResponseFormatError:
    """The error for a fetch that brought back a dead token (the token itself stays out)."""
    expiry = _utc(lease.server_expires_at)
    if lease.server_date is not None:
        than = f"the response's Date {_utc(lease.server_date)}"
    else:
        than = f"the time the request was sent ({_utc(lease.issued_at)}; no Date header)"
    return ResponseFormatError(
        f"company {company_id!r} token",
        f"the server issued a company token that has already expired (its expires_at "
        f"{expiry} leaves no time after {than}); not sending it",
    )


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "unknown"
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")
