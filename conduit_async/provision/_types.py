"""What bulk provisioning takes (specs) and gives back (results).

Specs are deliberately lenient: they are not validated when built, because a
bad row in a million-row file must become a `failed` result with its line
number, not an exception in the middle of reading. Results never hold a token
in their JSON form (`to_dict`), so they can go to logs and results files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ..errors import APIStatusError, ConduitError
from ..models import ClonedDashboard, Company, Workspace, converter

__all__ = [
    "BadRow",
    "CompanySpec",
    "Outcome",
    "ProvisionResult",
    "WorkspaceResult",
    "WorkspaceSpec",
    "error_dict",
]

#: What happened to one row. Every outcome but `failed` means the object now
#: exists as the row describes it.
Outcome = Literal["created", "updated", "unchanged", "failed"]

OUTCOMES: tuple[Outcome, ...] = ("created", "updated", "unchanged", "failed")


@attrs.frozen
class CompanySpec:
    """A company that should exist: `conduit.companies.provision(rows)` makes it so.

    `name` and `page_enabled` left as None are not managed: not sent on
    create (the server's defaults apply) and not compared with an existing
    company. `line` is where the row came from in a file, carried into its
    result.
    """

    id: str
    name: str | None = None
    page_enabled: bool | None = None
    line: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class WorkspaceSpec:
    """A sub-workspace that should exist, found by its `ext_id` (your own id for it).

    `ext_id` is required: without it an existing workspace cannot be told
    apart from a new one, and a rerun would create duplicates.
    """

    name: str
    ext_id: str
    line: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class BadRow:
    """A row that could not even be read (broken CSV quoting, bad JSON, a missing column).

    File readers yield it in place of a spec so that `provision` reports it,
    with its line number, as a `failed` result among the others instead of
    stopping the batch. `key` is the row's id or ext_id if one could be read.
    """

    error: ConduitError
    line: int | None = None
    key: str = ""


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


@attrs.frozen
class ProvisionResult:
    """What happened to one company row.

    `company` is the company as it now is (None when failed); `error` the
    typed reason when failed; `attempts` the row-level tries (each of which
    may itself have retried requests); `line` the source line, if any.
    """

    id: str
    outcome: Outcome
    company: Company | None = None
    error: ConduitError | None = None
    attempts: int = 1
    line: int | None = None

    @property
    def ok(self) -> bool:
        """True unless the row failed."""
        return self.outcome != "failed"

    @property
    def key(self) -> str:
        """What identifies the row across runs: the company id, lower-cased as the API compares."""
        return self.id.lower()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without the company token, e.g. for a results file."""
        return {
            "line": self.line,
            "id": self.id,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "company": None if self.company is None else _company_dict(self.company),
            "error": None if self.error is None else error_dict(self.error),
        }


@attrs.frozen
class WorkspaceResult:
    """What happened to one workspace row.

    `workspace` is the workspace (None when it could not be found or made);
    `clones` the dashboards this run cloned into it; `share_urls` maps each
    template dashboard id to the share URL of its copy in this workspace.
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

    @property
    def ok(self) -> bool:
        """True unless the row failed."""
        return self.outcome != "failed"

    @property
    def key(self) -> str:
        """What identifies the row across runs: its ext_id."""
        return self.ext_id

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
        }
