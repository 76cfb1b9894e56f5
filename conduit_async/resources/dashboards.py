"""Dashboards (v2 API): the organization's, and those of one sub-workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .. import _validate
from .._auth import Auth
from ..models import ClonedDashboard, Dashboard, parse, parse_list

if TYPE_CHECKING:
    from ..client import Conduit

__all__ = ["Dashboards", "WorkspaceDashboards"]

LIST = "GET /v2/dashboards/"
SHARE = "GET /v2/dashboards/{dashboard_id}/share/"
CLONE = "POST /v2/dashboards/{dashboard_id}/clone/"


@attrs.frozen
class _Url:
    url: str


@attrs.frozen
class _DashboardReader:
    """List and share: the calls both the organization and a workspace token can make."""

    _conduit: Conduit = attrs.field(repr=False)
    _auth: Auth = attrs.field(repr=False)

    async def list(self) -> list[Dashboard]:
        """The dashboards of the account the token belongs to."""
        c = self._conduit
        resp = await c._session.request("GET", c._v2("dashboards/"), auth=self._auth, endpoint=LIST)
        return parse_list(resp.data, Dashboard, LIST)

    async def share_url(self, dashboard_id: int) -> str:
        """An embeddable public URL of the dashboard."""
        _validate.positive_id(dashboard_id, "dashboard_id")
        c = self._conduit
        resp = await c._session.request(
            "GET", c._v2(f"dashboards/{dashboard_id}/share/"), auth=self._auth, endpoint=SHARE
        )
        return parse(resp.data, _Url, SHARE).url


@attrs.frozen
class Dashboards(_DashboardReader):
    """The organization account's dashboards (organization token)."""

    async def clone(
        self, dashboard_id: int, *, workspace: int, name: str | None = None
    ) -> ClonedDashboard:
        """Copy an organization dashboard into a sub-workspace (needs White-label configured).

        Not retried once sent: a lost response could otherwise leave two copies.
        """
        _validate.positive_id(dashboard_id, "dashboard_id")
        _validate.positive_id(workspace, "workspace")
        _validate.name(name, "name")
        body: dict[str, Any] = {"workspace": workspace}
        if name is not None:
            body["name"] = name
        c = self._conduit
        resp = await c._session.request(
            "POST",
            c._v2(f"dashboards/{dashboard_id}/clone/"),
            auth=self._auth,
            endpoint=CLONE,
            json_body=body,
        )
        return parse(resp.data, ClonedDashboard, CLONE)


@attrs.frozen
class WorkspaceDashboards(_DashboardReader):
    """The dashboards of one sub-workspace, with that workspace's token.

    No `clone` here: cloning is the organization's call.
    """
