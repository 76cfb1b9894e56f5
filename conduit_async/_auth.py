"""What the session needs from whatever supplies a request's bearer token.

The session never decides when to fetch a token: it asks an `Auth` for one
(without I/O when a usable token is at hand) and reports a refusal (401).
The token broker, and the resources' adapters over it, answer.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from .errors import ConfigurationError

__all__ = ["Auth", "StaticAuth"]


class Auth(Protocol):
    """The bearer token for one scope (the organization, a workspace, a company)."""

    def cached(self) -> str | None:
        """A token usable now, found without I/O; None when `token()` must fetch one."""
        ...

    async def token(self) -> str:
        """A token usable now, asked for only after `cached()` returned None: it may
        fetch at once, without a second look in the cache."""
        ...

    async def invalidate(self, token: str) -> bool:
        """The server refused `token` (401): forget it.

        Returns True when a different token can be had, so one more try is
        worthwhile; False when the same token would be sent again.
        """
        ...


@attrs.frozen
class StaticAuth:
    """A long-lived token from configuration (the organization or Link APP token).

    `source` names where it should have come from, so a missing token is a
    clear error naming the environment variable, raised when first needed.
    """

    value: str | None = attrs.field(repr=False)
    source: str

    def cached(self) -> str | None:
        return self.value or None

    async def token(self) -> str:
        if not self.value:
            raise ConfigurationError(
                f"this call needs the {self.source}: pass it to Conduit() or set it "
                "in the environment"
            )
        return self.value

    async def invalidate(self, token: str) -> bool:
        return False
