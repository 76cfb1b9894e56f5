"""Bulk provisioning: make thousands to millions of companies or workspaces exist, streaming.

Reached through `conduit.companies.provision(rows)` and
`conduit.workspaces.provision(rows, clone_dashboards=[...])`; the names users
need (`CompanySpec`, `WorkspaceSpec`, `ProvisionResult`, ...) are re-exported
by `conduit_async`.
"""

from ._companies import CompanyRow, provision_companies
from ._types import (
    BadRow,
    CompanySpec,
    Outcome,
    ProvisionResult,
    WorkspaceResult,
    WorkspaceSpec,
)
from ._workspaces import WorkspaceRow, provision_workspaces

__all__ = [
    "BadRow",
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
