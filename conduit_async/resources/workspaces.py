"""Sub-workspaces (v2 API): list, create, disable, and the view of one workspace."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from .. import _validate
from .._session import Response
from ..errors import NotFoundError
from ..models import Workspace, parse, parse_list
from ..tokens import TokenBroker
from .dashboards import WorkspaceDashboards

if TYPE_CHECKING:
    from ..client import Conduit
    from ..provision import WorkspaceResult, WorkspaceRow
    from ..provision._pool import Rows

__all__ = ["WorkspaceView", "Workspaces"]

LIST = "GET /v2/workspaces/"
CREATE = "POST /v2/workspaces/"
DISABLE = "DELETE /v2/workspaces/{workspace_id}/"


@attrs.frozen
class Workspaces:
    """The organization's sub-workspaces, managed with the organization token."""

    _conduit: Conduit = attrs.field(repr=False)

    async def list(self) -> list[Workspace]:
        """Every workspace of the organization, each with its own token (cached for later calls)."""
        c = self._conduit
        resp = await c._session.request(
            "GET", c._v2("workspaces/"), auth=c._org_auth, endpoint=LIST
        )
        workspaces = parse_list(resp.data, Workspace, LIST)
        c.tokens.replace_workspaces(workspaces)
        return workspaces

    async def create(self, name: str, *, ext_id: str | None = None) -> Workspace:
        """Create a workspace; `ext_id` is your own id for it.

        If the response is lost (timeout, reset, 5xx), a workspace with an
        `ext_id` is looked up by listing before any retry, so it is never
        created twice; one without an `ext_id` cannot be told apart from
        others, so it is not retried and `OutcomeUnknownError` says so.
        """
        _validate.name(name, "name", required=True)
        _validate.optional_text(ext_id, "ext_id")
        c = self._conduit
        body: dict[str, Any] = {"name": name}
        if ext_id is not None:
            body["ext_id"] = ext_id

        async def find_lost() -> Response | None:
            listing = await c._session.request(
                "GET", c._v2("workspaces/"), auth=c._org_auth, endpoint=LIST
            )
            for item in listing.data if isinstance(listing.data, list) else ():
                if isinstance(item, dict) and item.get("ext_id") == ext_id:
                    return Response(200, item, listing.sent_at, listing.date)
            return None

        resp = await c._session.request(
            "POST",
            c._v2("workspaces/"),
            auth=c._org_auth,
            endpoint=CREATE,
            json_body=body,
            reconcile=find_lost if ext_id is not None else None,
        )
        workspace = parse(resp.data, Workspace, CREATE)
        c.tokens.remember_workspaces([workspace])
        return workspace

    def provision(
        self,
        rows: Rows[WorkspaceRow],
        *,
        clone_dashboards: Iterable[int] = (),
        concurrency: int = 16,
        retries: int = 2,
    ) -> AsyncGenerator[WorkspaceResult, None]:
        """Make a workspace exist per row, with copies of template dashboards; yield a result
        per row as it finishes.

        `rows` is any iterable or async iterable of `WorkspaceSpec(name, ext_id)`
        (or dicts with those keys), read lazily. Workspaces are listed once;
        one whose `ext_id` exists is not created again (`unchanged`). Each
        organization dashboard in `clone_dashboards` is cloned into every new
        workspace (and into an existing one that lacks a copy of that name:
        `updated`), and the result's `share_urls` maps each template id to
        the share URL of its copy, fetched with the workspace's own token.
        Failures, retries, back-pressure and cleanup are as for
        `Companies.provision`; an unknown template id is raised at once.
        """
        from ..provision import provision_workspaces  # provision imports resources

        return provision_workspaces(
            self._conduit,
            rows,
            clone_dashboards=clone_dashboards,
            concurrency=concurrency,
            retries=retries,
        )

    async def disable(self, workspace_id: int) -> None:
        """Disable a workspace: its token stops working."""
        _validate.positive_id(workspace_id, "workspace_id")
        c = self._conduit
        await c._session.request(
            "DELETE",
            c._v2(f"workspaces/{workspace_id}/"),
            auth=c._org_auth,
            endpoint=DISABLE,
        )
        c.tokens.forget_workspace(workspace_id)


@attrs.frozen
class WorkspaceView:
    """One sub-workspace, seen with its own token: `await ws.dashboards.list()`."""

    _conduit: Conduit = attrs.field(repr=False)
    workspace_id: int | None
    ext_id: str | None = None

    @property
    def dashboards(self) -> WorkspaceDashboards:
        auth = WorkspaceAuth(self._conduit.tokens, self.workspace_id, self.ext_id)
        return WorkspaceDashboards(self._conduit, auth)

    async def get(self) -> Workspace:
        """The workspace itself (from the cache, or one shared listing on a miss).

        Raises `NotFoundError` if no workspace of the organization has that id or ext_id.
        """
        return await _workspace(self._conduit.tokens, self.workspace_id, self.ext_id)


async def _workspace(
    broker: TokenBroker, workspace_id: int | None, ext_id: str | None
) -> Workspace:
    ws = await broker.workspace(workspace_id, ext_id)
    if ws is None:
        what = f"id {workspace_id}" if workspace_id is not None else f"ext_id {ext_id!r}"
        raise NotFoundError(
            status=404,
            method="GET",
            path="/v2/workspaces/",
            code="workspace_not_found",
            message=f"no workspace with {what} (unknown or disabled)",
        )
    return ws


@attrs.frozen
class WorkspaceAuth:
    """Authorizes a request with one sub-workspace's token, through the broker."""

    broker: TokenBroker = attrs.field(repr=False)
    workspace_id: int | None
    ext_id: str | None

    def cached(self) -> str | None:
        ws = self.broker.cached_workspace(self.workspace_id, self.ext_id)
        return None if ws is None else ws.token

    async def token(self) -> str:
        return (await _workspace(self.broker, self.workspace_id, self.ext_id)).token

    async def invalidate(self, token: str) -> bool:
        return await self.broker.workspace_refused(self.workspace_id, self.ext_id, token)
