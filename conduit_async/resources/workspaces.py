"""Sub-workspaces (v2 API): list, create, disable, and the view of one workspace."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from .. import _validate, routes
from ..errors import AmbiguousWorkspaceError, NotFoundError, ValidationError
from ..models import Workspace
from ..provision._pool import ROW_RETRIES, WORKSPACE_CONCURRENCY
from ..routes import Reply
from ..tokens import TokenBroker
from .dashboards import WorkspaceDashboards

if TYPE_CHECKING:
    from ..client import Conduit
    from ..provision import WorkspaceResult, WorkspaceRow
    from ..provision._pool import Rows

__all__ = ["WorkspaceAuth", "WorkspaceView", "Workspaces"]


@attrs.frozen
class Workspaces:
    """The organization's sub-workspaces, managed with the organization token."""

    _conduit: Conduit = attrs.field(repr=False)

    async def list(self) -> list[Workspace]:
        """Every workspace of the organization, each with its own token (cached for later calls)."""
        workspaces = (await self._conduit.request(routes.LIST_WORKSPACES)).value
        self._conduit.tokens.replace_workspaces(workspaces)
        return workspaces

    async def create(
        self, name: str, *, ext_id: str | None = None, allow_duplicate_ext_id: bool = False
    ) -> Workspace:
        """Create a workspace; `ext_id` is your own id for it.

        Conduit does not keep ext_ids unique, so an `ext_id` already in use is
        refused (`ValidationError`, naming the workspace that has it) before
        anything is sent, unless `allow_duplicate_ext_id=True`.

        If the response is lost (timeout, reset, 5xx), a workspace with an
        `ext_id` is looked for in a fresh listing before any retry, and, if not
        there yet, looked for again once the lost attempt has had time to
        land; it is never created twice. One without an `ext_id` cannot be
        told apart from others, so it is not retried: `OutcomeUnknownError`.
        """
        _validate.name(name, "name", required=True)
        _validate.optional_text(ext_id, "ext_id")
        body: dict[str, Any] = {"name": name}
        if ext_id is None:
            reply = await self._conduit.request(routes.CREATE_WORKSPACE, json=body)
            return self._remember(reply.value)
        body["ext_id"] = ext_id
        # One create of an ext_id at a time in this client: the second then sees the first.
        async with self._conduit.tokens.creating.hold(ext_id):
            return await self._create(body, ext_id, allow_duplicate_ext_id)

    async def _create(self, body: dict[str, Any], ext_id: str, allow_duplicate: bool) -> Workspace:
        before = await self._holders(ext_id, fresh=not allow_duplicate)
        if before and not allow_duplicate:
            ids = ", ".join(str(i) for i in sorted(before))
            raise ValidationError(
                "ext_id",
                f"{ext_id!r} is already used by workspace {ids}; "
                "pass allow_duplicate_ext_id=True to create another",
            )

        async def lookup(_sent: bytes | None) -> Reply[Workspace] | None:
            reply = await self._conduit.request(routes.LIST_WORKSPACES)
            self._conduit.tokens.replace_workspaces(reply.value)
            new = [w for w in reply.value if w.ext_id == ext_id and w.id not in before]
            if not new:
                return None
            # Ids grow: if others made some too meanwhile, ours is the newest.
            return Reply(max(new, key=lambda w: w.id), reply.sent_at, reply.date)

        reply = await self._conduit.request(routes.CREATE_WORKSPACE, json=body, lookup=lookup)
        return self._remember(reply.value)

    async def _holders(self, ext_id: str, *, fresh: bool) -> set[int]:
        """Ids of the workspaces known to have `ext_id`: from the cache, or (`fresh`, on
        a miss, when the client has never listed the workspaces) from a listing."""
        tokens = self._conduit.tokens
        try:
            found = tokens.cached_workspace(None, ext_id)
        except AmbiguousWorkspaceError as exc:
            return set(exc.workspace_ids)
        if found is None and fresh and not tokens.workspaces_listed:
            return {w.id for w in await self.list() if w.ext_id == ext_id}
        return set() if found is None else {found.id}

    def _remember(self, workspace: Workspace) -> Workspace:
        self._conduit.tokens.remember_workspaces([workspace])
        return workspace

    def provision(
        self,
        rows: Rows[WorkspaceRow],
        *,
        clone_dashboards: Iterable[int] = (),
        concurrency: int = WORKSPACE_CONCURRENCY,
        retries: int = ROW_RETRIES,
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
        A second row with the same `ext_id` fails as a duplicate. Failures,
        retries, back-pressure, duplicates and stopping early are as for
        `Companies.provision`; an unknown template id is raised at once.
        """
        from ..provision import provision_workspaces  # provision builds on this module

        return provision_workspaces(
            self._conduit,
            rows,
            clone_dashboards=clone_dashboards,
            concurrency=concurrency,
            retries=retries,
        )

    async def disable(self, workspace_id: int) -> None:
        """Disable a workspace: its token stops working.

        A retry that finds it gone after an attempt whose answer was lost
        counts as done: that attempt disabled it.
        """
        _validate.positive_id(workspace_id, "workspace_id")
        await self._conduit.request(routes.DISABLE_WORKSPACE, workspace_id=workspace_id)
        self._conduit.tokens.forget_workspace(workspace_id)


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

        Raises `NotFoundError` if no workspace of the organization has that id
        or ext_id, and `AmbiguousWorkspaceError` if several have that ext_id.
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
