"""Dashboards (v2 API): the organization's, and those of one sub-workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .. import _validate, routes
from .._auth import Auth
from ..models import ClonedDashboard, Dashboard

if TYPE_CHECKING:
    from ..client import Conduit

__all__ = ["Dashboards", "WorkspaceDashboards"]


@attrs.frozen
class _DashboardReader:
    """List and share: the calls both the organization and a workspace token can make."""

    _conduit: Conduit = attrs.field(repr=False)
    _auth: Auth = attrs.field(repr=False)

    async def list(self) -> list[Dashboard]:
        """The dashboards of the account the token belongs to."""
        return (await self._conduit.request(routes.LIST_DASHBOARDS, auth=self._auth)).value

    async def share_url(self, dashboard_id: int) -> str:
        """An embeddable public URL of the dashboard."""
        _validate.positive_id(dashboard_id, "dashboard_id")
        reply = await self._conduit.request(
            routes.SHARE_URL, auth=self._auth, dashboard_id=dashboard_id
        )
        return reply.value


@attrs.frozen
class Dashboards(_DashboardReader):
    """The organization account's dashboards (organization token)."""

    async def clone(
        self, dashboard_id: int, *, workspace: int, name: str | None = None
    ) -> ClonedDashboard:
        """Copy an organization dashboard into a sub-workspace (needs White-label configured).

        Not retried once sent: a lost response could otherwise leave two
        copies. When its outcome is lost, `OutcomeUnknownError` is raised only
        after the lost attempt has had time to land, so that a look at the
        workspace's dashboards then tells whether it did.
        """
        _validate.positive_id(dashboard_id, "dashboard_id")
        _validate.positive_id(workspace, "workspace")
        _validate.name(name, "name")
        body: dict[str, Any] = {"workspace": workspace}
        if name is not None:
            body["name"] = name
        reply = await self._conduit.request(
            routes.CLONE_DASHBOARD, json=body, dashboard_id=dashboard_id
        )
        return reply.value


@attrs.frozen
class WorkspaceDashboards(_DashboardReader):
    """The dashboards of one sub-workspace, with that workspace's token.

    No `clone` here: cloning is the organization's call.
    """
