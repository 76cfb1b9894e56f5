"""conduit-async: the asyncio SDK for the Conduit v2 and Link APIs."""

from ._retry import RetryPolicy
from .client import Conduit
from .errors import (
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
    CompanySpec,
    Outcome,
    ProvisionResult,
    WorkspaceResult,
    WorkspaceSpec,
)
from .resources.companies import CompanyView
from .resources.workspaces import WorkspaceView
from .tokens import InMemoryTokenStore, TokenBroker, TokenLease, TokenStore

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "Account",
    "ApiToken",
    "AuthenticationError",
    "BadRequestError",
    "BadRow",
    "ClientClosedError",
    "ClonedDashboard",
    "Company",
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
