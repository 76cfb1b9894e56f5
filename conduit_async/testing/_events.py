"""What happened to the fake's state, as small typed events.

The rules in ``_state`` announce each event to a listener and know nothing of what it is
for; the server hands them to :class:`~conduit_async.testing.FakeStats`, which counts
them. Objects seeded through the ``fake.add_*`` helpers announce nothing: the counters
describe what clients did. Tuples, because a token is issued on nearly every request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "CompanyCreated",
    "DashboardCloned",
    "Event",
    "Listener",
    "TokenIssued",
    "TokenRevoked",
    "WorkspaceCreated",
]


class TokenIssued(NamedTuple):
    """A company token was issued (create, get, edit, list, or the test helper)."""

    company: str
    """The lower-cased company id."""


class TokenRevoked(NamedTuple):
    """A company's earlier token stopped working because a newer one was issued
    (``revoke_on_reissue``)."""

    company: str


class CompanyCreated(NamedTuple):
    """``POST /link/company/`` created a company."""

    company: str


class WorkspaceCreated(NamedTuple):
    """``POST /v2/workspaces/`` created a workspace."""

    ext_id: str | None


class DashboardCloned(NamedTuple):
    """``POST /v2/dashboards/{dashboard_id}/clone/`` made a copy."""

    dashboard_id: int
    """The new dashboard's id."""


Event = TokenIssued | TokenRevoked | CompanyCreated | WorkspaceCreated | DashboardCloned
Listener = Callable[[Event], None]
