"""Bulk workspace provisioning: one workspace per `ext_id`, each with copies of template
dashboards and their share URLs.

Workspaces are listed once up front; a row whose `ext_id` is already there is
not created again. A second row with the same `ext_id` in one input is
refused (the server does not enforce its uniqueness, and which row won would
depend on timing). Every row-level retry looks before it creates or clones
again: the workspaces are listed anew, the workspace's dashboards listed.
Template dashboards are cloned into each new workspace; an existing workspace
gets the copies it lacks (matched by name), so a rerun after a failed clone
completes the job instead of skipping it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from .. import _validate
from ..errors import ConduitError, ValidationError
from ..models import ClonedDashboard, Dashboard, Workspace
from ._keys import Duplicates
from ._pool import ROW_RETRIES, WORKSPACE_CONCURRENCY, Rows, check_pool_args, retrying, run_pool
from ._schema import WORKSPACES, BadRow, WorkspaceSpec
from ._types import Outcome, WorkspaceResult

if TYPE_CHECKING:
    from ..client import Conduit

__all__ = ["WorkspaceRow", "provision_workspaces"]

#: One row of `workspaces.provision`: a spec, a mapping with the same keys, or a row
#: a reader could not parse.
WorkspaceRow = WorkspaceSpec | Mapping[str, object] | BadRow


@attrs.define
class _Progress:
    """What one row has achieved so far, kept across its row-level retries so a retry
    resumes rather than redoes (a second clone would be a duplicate)."""

    workspace: Workspace | None = None
    created: bool = False
    copies: dict[int, int] = attrs.field(factory=dict)
    """Template dashboard id -> id of its copy in the workspace."""
    clones: list[ClonedDashboard] = attrs.field(factory=list)
    share_urls: dict[int, str] = attrs.field(factory=dict)

    def outcome(self) -> Outcome:
        if self.created:
            return "created"
        return "updated" if self.clones else "unchanged"


class _Batch:
    """The state one `workspaces.provision` call shares between its workers."""

    def __init__(self, conduit: Conduit, retries: int) -> None:
        self.conduit = conduit
        self.retries = retries
        self.templates: tuple[Dashboard, ...] = ()
        self.known: dict[str, Workspace] = {}
        self.duplicates = Duplicates(WORKSPACES.key_field)

    async def prepare(self, template_ids: Iterable[int]) -> None:
        """Check the template dashboards exist and list the workspaces, once for the batch."""
        wanted = list(template_ids)
        if wanted:
            available = {d.id: d for d in await self.conduit.dashboards.list()}
            missing = [str(i) for i in wanted if i not in available]
            if missing:
                raise ValidationError(
                    "clone_dashboards",
                    f"no dashboard {', '.join(missing)} in the organization account "
                    f"(it has {', '.join(str(i) for i in sorted(available)) or 'none'})",
                )
            self.templates = tuple(available[i] for i in wanted)
        await self.relist()

    async def relist(self) -> None:
        for ws in await self.conduit.workspaces.list():
            if ws.ext_id is not None:
                self.known[ws.ext_id] = ws

    async def work(self, row: WorkspaceRow, number: int) -> WorkspaceResult:
        spec = WORKSPACES.check(row)
        if isinstance(spec, BadRow):
            return WorkspaceResult(
                spec.key, spec.name, "failed", error=spec.error, attempts=0, line=spec.line
            )
        duplicate = self.duplicates.check(WORKSPACES.key(spec), spec.line, number)
        if duplicate is not None:
            return WorkspaceResult(
                spec.ext_id,
                spec.name,
                "failed",
                error=duplicate,
                attempts=0,
                line=spec.line,
                spec=spec,
            )
        done = _Progress()
        tries = 1
        error: ConduitError | None = None
        try:  # the first try inline: most rows need nothing more
            await self.ensure(spec, done, 1)
        except ConduitError as failed:

            async def again(attempt: int) -> None:
                await self.ensure(spec, done, attempt)

            value, tries = await retrying(again, failed, self.retries, self.conduit.retry)
            error = value if isinstance(value, ConduitError) else None
        return WorkspaceResult(
            spec.ext_id,
            spec.name,
            "failed" if error else done.outcome(),
            workspace=done.workspace,
            clones=tuple(done.clones),
            share_urls=dict(done.share_urls),
            error=error,
            attempts=tries,
            line=spec.line,
            spec=spec,
        )

    async def ensure(self, spec: WorkspaceSpec, done: _Progress, attempt: int) -> None:
        if done.workspace is None:
            done.workspace = await self.find_or_create(spec, done, attempt)
        await self.fill(done.workspace, done, attempt)

    async def fill(self, ws: Workspace, done: _Progress, attempt: int) -> None:
        """Give the workspace a copy of every template, and note each copy's share URL."""
        view = self.conduit.workspace(ws.id)
        missing = [t for t in self.templates if t.id not in done.copies]
        if missing and (not done.created or attempt > 1):
            # An existing workspace may hold copies already, and a retry may follow a
            # clone whose response was lost: look before cloning.
            present: dict[str, list[int]] = {}
            for dashboard in await view.dashboards.list():
                present.setdefault(dashboard.name, []).append(dashboard.id)
            for template in missing:
                ids = present.get(template.name)
                if ids:
                    done.copies[template.id] = ids.pop(0)
        for template in self.templates:
            if template.id not in done.copies:
                clone = await self.conduit.dashboards.clone(template.id, workspace=ws.id)
                done.clones.append(clone)
                done.copies[template.id] = clone.id
        for template in self.templates:
            if template.id not in done.share_urls:
                url = await view.dashboards.share_url(done.copies[template.id])
                done.share_urls[template.id] = url

    async def find_or_create(self, spec: WorkspaceSpec, done: _Progress, attempt: int) -> Workspace:
        ws = self.known.get(spec.ext_id)
        if ws is None and attempt > 1:
            await self.relist()  # an earlier attempt's create may have landed after all
            ws = self.known.get(spec.ext_id)
        if ws is None:
            ws = await self.conduit.workspaces.create(spec.name, ext_id=spec.ext_id)
            self.known[spec.ext_id] = ws
            done.created = True
        return ws


def provision_workspaces(
    conduit: Conduit,
    rows: Rows[WorkspaceRow],
    *,
    clone_dashboards: Iterable[int] = (),
    concurrency: int = WORKSPACE_CONCURRENCY,
    retries: int = ROW_RETRIES,
) -> AsyncGenerator[WorkspaceResult, None]:
    """See `Workspaces.provision`."""
    check_pool_args(conduit, concurrency, retries)
    template_ids = list(
        dict.fromkeys(_validate.positive_id(d, "clone_dashboards") for d in clone_dashboards)
    )
    return _provision(conduit, rows, template_ids, concurrency, retries)


async def _provision(
    conduit: Conduit,
    rows: Rows[WorkspaceRow],
    template_ids: list[int],
    concurrency: int,
    retries: int,
) -> AsyncGenerator[WorkspaceResult, None]:
    batch = _Batch(conduit, retries)
    await batch.prepare(template_ids)
    # aclosing: when our consumer stops, the pool's workers must stop with it, now.
    async with contextlib.aclosing(run_pool(rows, batch.work, concurrency)) as results:
        async for result in results:
            yield result
