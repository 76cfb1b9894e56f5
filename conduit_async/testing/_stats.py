"""What the fake server counted, so tests can assert on the SDK's behaviour on the wire
(how many tokens it fetched, whether it ever sent an expired one, whether a retry created
a second object) rather than only on its return values."""

from __future__ import annotations

from typing import NamedTuple

import attrs

from ._events import (
    CompanyCreated,
    DashboardCloned,
    Event,
    TokenIssued,
    TokenRevoked,
    WorkspaceCreated,
)

__all__ = ["ExpiredTokenUse", "FakeStats"]


class ExpiredTokenUse(NamedTuple):
    """A request that arrived carrying a company token past its ``expires_at``."""

    route: str
    """The route key, e.g. ``"GET /link/credentials/"``."""
    at: float
    """Server time (Unix seconds, clock plus ``clock_offset``) when it arrived."""


@attrs.define
class FakeStats:
    """Counters kept by :class:`~conduit_async.testing.FakeConduit`, live.

    Route keys are the spec's ``"METHOD /pattern/"`` strings. Objects added through the
    ``fake.add_*`` helpers are not counted as created: these counters describe what
    clients did.
    """

    requests_total: int = 0
    """Every request to an API route, whatever its outcome (``/_fake/`` routes excluded)."""
    requests: dict[str, dict[str, int]] = attrs.Factory(dict)
    """Route key -> outcome -> count. The outcome is the status sent as a string
    (``"200"`` for every successful JSON response, ``"204"`` for DELETE, errors by their
    code), or ``"reset"`` / ``"lost"`` when the connection was dropped instead. Left
    empty when the server runs with ``fast=True``."""
    tokens_issued: dict[str, int] = attrs.Factory(dict)
    """Lower-cased company id -> company tokens issued (create, get, edit, list, or
    ``fake.issue_company_token``)."""
    expired_token_requests: int = 0
    """Requests that arrived with an expired company token, faults or not."""
    expired_token_log: list[ExpiredTokenUse] = attrs.Factory(list)
    """The same requests, in arrival order."""
    tokens_revoked_on_reissue: dict[str, int] = attrs.Factory(dict)
    """Lower-cased company id -> company tokens that stopped working because a newer one
    was issued (only with ``revoke_on_reissue``)."""
    revoked_token_requests: int = 0
    """Requests that arrived with a company token revoked that way, faults or not (each
    answered 401 ``token_revoked``)."""
    companies_created: dict[str, int] = attrs.Factory(dict)
    """Lower-cased company id -> successful ``POST /link/company/`` calls."""
    workspaces_created: int = 0
    """Successful ``POST /v2/workspaces/`` calls."""
    workspaces_created_by_ext_id: dict[str, int] = attrs.Factory(dict)
    """``ext_id`` -> workspaces created with it (workspaces without one are not listed);
    a count above 1 is how a test spots a blind retry of create."""
    dashboards_cloned: int = 0
    """Successful ``POST /v2/dashboards/{dashboard_id}/clone/`` calls."""
    faults_injected: dict[str, int] = attrs.Factory(dict)
    """Fault label (``"status_429"``, ``"status_503"``, ``"reset"``, ``"lost"``,
    ``"latency"``) -> times injected."""

    def record_event(self, event: Event) -> None:
        """Count what the fake's rules announced (the server's listener)."""
        match event:
            case TokenIssued(company):
                issued = self.tokens_issued
                issued[company] = issued.get(company, 0) + 1
            case TokenRevoked(company):
                revoked = self.tokens_revoked_on_reissue
                revoked[company] = revoked.get(company, 0) + 1
            case CompanyCreated(company):
                created = self.companies_created
                created[company] = created.get(company, 0) + 1
            case WorkspaceCreated(ext_id):
                self.workspaces_created += 1
                if ext_id is not None:
                    by_ext_id = self.workspaces_created_by_ext_id
                    by_ext_id[ext_id] = by_ext_id.get(ext_id, 0) + 1
            case DashboardCloned():
                self.dashboards_cloned += 1

    def record(self, route: str, outcome: str) -> None:
        """Count one outcome of one request to ``route``."""
        per_route = self.requests.get(route)
        if per_route is None:
            per_route = self.requests[route] = {}
        per_route[outcome] = per_route.get(outcome, 0) + 1

    def count(self, route: str, outcome: int | str | None = None) -> int:
        """Requests to ``route`` that ended with ``outcome`` (a status such as ``429``,
        or ``"reset"`` / ``"lost"``), or all of them when ``outcome`` is None."""
        per_route = self.requests.get(route, {})
        if outcome is None:
            return sum(per_route.values())
        return per_route.get(str(outcome), 0)

    def reset(self) -> None:
        """Zero every counter, e.g. between the set-up and the measured part of a test."""
        fresh = FakeStats()
        for field in attrs.fields(FakeStats):
            setattr(self, field.name, getattr(fresh, field.name))

    def to_json(self) -> dict[str, object]:
        """The JSON document served at ``GET /_fake/stats``; copies, so it can be kept."""
        return {
            "requests_total": self.requests_total,
            "requests": {route: dict(outcomes) for route, outcomes in self.requests.items()},
            "tokens_issued": dict(self.tokens_issued),
            "expired_token_requests": self.expired_token_requests,
            "expired_token_log": [
                {"route": use.route, "at": use.at} for use in self.expired_token_log
            ],
            "tokens_revoked_on_reissue": dict(self.tokens_revoked_on_reissue),
            "revoked_token_requests": self.revoked_token_requests,
            "companies_created": dict(self.companies_created),
            "workspaces_created": self.workspaces_created,
            "workspaces_created_by_ext_id": dict(self.workspaces_created_by_ext_id),
            "dashboards_cloned": self.dashboards_cloned,
            "faults_injected": dict(self.faults_injected),
        }
