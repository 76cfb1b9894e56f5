"""What bulk provisioning gives back: a result per row.

Results never hold a token in their JSON form (`to_dict`), so they can go to
logs and results files; that form also carries the row's fingerprint, which
`--resume` compares to tell a finished row from one whose fields changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ..errors import APIStatusError, ConduitError
from ..models import ClonedDashboard, Company, Workspace, converter
from ._schema import COMPANIES, WORKSPACES, CompanySpec, WorkspaceSpec

__all__ = [
    "OUTCOMES",
    "CompanyResult",
    "Outcome",
    "ProvisionResult",
    "WorkspaceResult",
    "error_dict",
]

#: What happened to one row. Every outcome but `failed` means the object now
#: exists as the row describes it.
Outcome = Literal["created", "updated", "unchanged", "failed"]

OUTCOMES: tuple[Outcome, ...] = ("created", "updated", "unchanged", "failed")


def error_dict(error: ConduitError) -> dict[str, Any]:
    """An error as JSON: its class, its message (token-free by construction) and any status."""
    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, APIStatusError):
        data["status"] = error.status
    return data


def _company_dict(company: Company) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(company)
    data.pop("api_token", None)  # a live credential: never in a results file
    return data


def _workspace_dict(workspace: Workspace) -> dict[str, Any]:
    return {"id": workspace.id, "name": workspace.name, "ext_id": workspace.ext_id}


@attrs.frozen(weakref_slot=False)
class CompanyResult:
    """What happened to one company row.

    `company` is the company as it now is (None when failed); `error` the
    typed reason when failed; `attempts` the row-level tries (each of which
    may itself have retried requests; 0 when the row was refused before
    anything was sent); `line` the source line, if any; `spec` the row as
    provisioned (None when it could not be read).
    """

    id: str
    outcome: Outcome
    company: Company | None = None
    error: ConduitError | None = None
    attempts: int = 1
    line: int | None = None
    spec: CompanySpec | None = attrs.field(default=None, kw_only=True, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        """True unless the row failed."""
        return self.outcome != "failed"

    @property
    def key(self) -> str:
        """What identifies the row across runs: the company id, lower-cased as the API compares."""
        return COMPANIES.identity(self.id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without the company token, e.g. for a results file."""
        return {
            "line": self.line,
            "id": self.id,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "company": None if self.company is None else _company_dict(self.company),
            "error": None if self.error is None else error_dict(self.error),
            "fingerprint": None if self.spec is None else COMPANIES.fingerprint(self.spec),
        }


#: The name `CompanyResult` had in 0.1.0.
ProvisionResult = CompanyResult


@attrs.frozen
class WorkspaceResult:
    """What happened to one workspace row.

    `workspace` is the workspace (None when it could not be found or made);
    `clones` the dashboards this run cloned into it; `share_urls` maps each
    template dashboard id to the share URL of its copy in this workspace;
    `spec` the row as provisioned (None when it could not be read).
    Outcome: `created` (new workspace), `updated` (existing workspace that
    lacked some template dashboards, now cloned), `unchanged` or `failed`.
    """

    ext_id: str
    name: str
    outcome: Outcome
    workspace: Workspace | None = None
    clones: tuple[ClonedDashboard, ...] = ()
    share_urls: Mapping[int, str] = attrs.field(factory=dict, hash=False)
    error: ConduitError | None = None
    attempts: int = 1
    line: int | None = None
    spec: WorkspaceSpec | None = attrs.field(default=None, kw_only=True, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        """True unless the row failed."""
        return self.outcome != "failed"

    @property
    def key(self) -> str:
        """What identifies the row across runs: its ext_id."""
        return WORKSPACES.identity(self.ext_id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without the workspace token, e.g. for a results file."""
        return {
            "line": self.line,
            "ext_id": self.ext_id,
            "name": self.name,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "workspace": None if self.workspace is None else _workspace_dict(self.workspace),
            "clones": [converter.unstructure(clone) for clone in self.clones],
            "share_urls": {str(k): v for k, v in self.share_urls.items()},
            "error": None if self.error is None else error_dict(self.error),
            "fingerprint": None if self.spec is None else WORKSPACES.fingerprint(self.spec),
        }
