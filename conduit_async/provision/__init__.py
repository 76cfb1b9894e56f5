"""Bulk provisioning: make thousands to millions of companies or workspaces exist, streaming.

Reached through `conduit.companies.provision(rows)` and
`conduit.workspaces.provision(rows, clone_dashboards=[...])`; the names users
need (`CompanySpec`, `WorkspaceSpec`, `CompanyResult`, ...) are re-exported
by `conduit_async`. Each kind's row schema (columns, coercion, validation,
identity, fingerprint) is `COMPANIES` / `WORKSPACES` in `_schema`.
"""

from ._companies import CompanyRow, provision_companies
from ._schema import BadRow, CompanySpec, WorkspaceSpec
from ._types import CompanyResult, Outcome, ProvisionResult, WorkspaceResult
from ._workspaces import WorkspaceRow, provision_workspaces

__all__ = [
    "BadRow",
    "CompanyResult",
    "CompanyRow",
    "CompanySpec",
    "Outcome",
    "ProvisionResult",
    "WorkspaceResult",
    "WorkspaceRow",
    "WorkspaceSpec",
    "provision_companies",
    "provision_workspaces",
]
