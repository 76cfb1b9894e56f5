"""conduit-async: the asyncio SDK for the Conduit v2 and Link APIs."""

from ._retry import RetryPolicy
from .client import Conduit
from .errors import (
    AmbiguousWorkspaceError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConduitError,
    ConduitTimeoutError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    ResponseFormatError,
    ServerError,
    TransportError,
    ValidationError,
)
from .models import (
    Account,
    ApiToken,
    ClonedDashboard,
    Company,
    Credential,
    Dashboard,
    DataLakeFile,
    Integration,
    LinkPage,
    Workspace,
)
from .provision import (
    BadRow,
    CompanyResult,
    CompanySpec,
    Outcome,
    ProvisionResult,
    WorkspaceResult,
    WorkspaceSpec,
)
from .resources.companies import CompanyView
from .resources.workspaces import WorkspaceView
from .stats import Stats
from .tokens import InMemoryTokenStore, TokenBroker, TokenLease, TokenStore

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "Account",
    "AmbiguousWorkspaceError",
    "ApiToken",
    "AuthenticationError",
    "BadRequestError",
    "BadRow",
    "ClientClosedError",
    "ClonedDashboard",
    "Company",
    "CompanyResult",
    "CompanySpec",
    "CompanyView",
    "Conduit",
    "ConduitError",
    "ConduitTimeoutError",
    "ConfigurationError",
    "ConflictError",
    "Credential",
    "Dashboard",
    "DataLakeFile",
    "InMemoryTokenStore",
    "Integration",
    "LinkPage",
    "NotFoundError",
    "Outcome",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "ProvisionResult",
    "RateLimitError",
    "RedirectError",
    "ResponseFormatError",
    "RetryPolicy",
    "ServerError",
    "Stats",
    "TokenBroker",
    "TokenLease",
    "TokenStore",
    "TransportError",
    "ValidationError",
    "Workspace",
    "WorkspaceResult",
    "WorkspaceSpec",
    "WorkspaceView",
    "__version__",
]
