"""The exception hierarchy: one root, HTTP failures keyed by status.

Every error the SDK raises is a `ConduitError`. Messages name what went wrong
and where (method, path, field) but never carry a token: they end up in logs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

__all__ = [
    "APIStatusError",
    "AmbiguousWorkspaceError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConduitError",
    "ConduitTimeoutError",
    "ConfigurationError",
    "ConflictError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "ResponseFormatError",
    "ServerError",
    "TransportError",
    "ValidationError",
    "error_for_status",
]

#: How much of a response body an error keeps: enough to debug, bounded for memory.
BODY_EXCERPT = 2048


class ConduitError(Exception):
    """Root of every error the SDK raises."""


class ConfigurationError(ConduitError):
    """The client is missing something it needs (a token, a base URL)."""


class ClientClosedError(ConduitError, RuntimeError):
    """A call was made on a `Conduit` that has been closed."""


class ValidationError(ConduitError, ValueError):
    """An argument was refused before any request was sent.

    `argument` names the offending parameter (or file column); `reason` says why.
    """

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"{argument}: {reason}")
        self.argument = argument
        self.reason = reason


class ResponseFormatError(ConduitError):
    """The server answered 2xx, but not with the shape the spec documents."""

    def __init__(self, endpoint: str, detail: str) -> None:
        super().__init__(f"{endpoint}: unexpected response: {detail}")
        self.endpoint = endpoint
        self.detail = detail


class TransportError(ConduitError):
    """The request did not get an HTTP response (connection refused, reset, DNS)."""

    def __init__(self, endpoint: str, detail: str, *, sent: bool = True) -> None:
        super().__init__(f"{endpoint}: {detail}")
        self.endpoint = endpoint
        self.detail = detail
        #: False only when the failure happened before any byte left, so the
        #: server cannot have acted on it.
        self.sent = sent


class ConduitTimeoutError(TransportError, TimeoutError):
    """The request timed out; the server may or may not have acted on it."""


class OutcomeUnknownError(ConduitError):
    """A non-idempotent request failed after it was sent, and could not be reconciled.

    The object may or may not exist on the server; retrying blindly could create
    it twice. `cause` is the failure that made the outcome unknown.
    """

    def __init__(self, endpoint: str, cause: BaseException) -> None:
        super().__init__(
            f"{endpoint}: outcome unknown, the request may have been applied "
            f"({type(cause).__name__}: {cause}); not retried to avoid a duplicate"
        )
        self.endpoint = endpoint
        self.cause = cause


class AmbiguousWorkspaceError(ConduitError, LookupError):
    """More than one workspace has the `ext_id` a lookup named.

    Conduit does not enforce that ext_ids are unique, so which workspace is
    meant cannot be known: name it by id (`workspace_ids` lists the candidates).
    """

    def __init__(self, ext_id: str, workspace_ids: Iterable[int]) -> None:
        self.ext_id = ext_id
        self.workspace_ids = tuple(sorted(workspace_ids))
        ids = ", ".join(str(i) for i in self.workspace_ids)
        super().__init__(
            f"ext_id {ext_id!r} belongs to more than one workspace (ids {ids}); "
            "name the workspace by id"
        )


class APIStatusError(ConduitError):
    """The server answered with a non-2xx status.

    Carries `status`, the server's `code` and `message` when the body has the
    documented `{"code", "message"}` shape, an excerpt of the raw `body`, and
    the `method` and `path` of the request.
    """

    status_codes: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        *,
        status: int,
        method: str,
        path: str,
        code: str | None = None,
        message: str | None = None,
        body: str = "",
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.code = code
        self.message = message
        self.body = body[:BODY_EXCERPT]
        self.hint = hint
        text = f"{method} {path} -> {status}"
        if code:
            text += f" [{code}]"
        if message:
            text += f": {message}"
        elif body and not code:
            text += f": {_one_line(self.body)}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class RedirectError(APIStatusError):
    """A 3xx the SDK refused to follow: to another origin (the bearer token would
    go with it), a method change, or too many hops. Not retried: it would only
    happen again."""


class BadRequestError(APIStatusError):
    """400 or 422: the server refused the input."""

    status_codes = (400, 422)


class AuthenticationError(APIStatusError):
    """401: the token is missing, unknown, revoked or expired."""

    status_codes = (401,)


class PermissionDeniedError(APIStatusError):
    """403: refused. Often an unconfigured organization name or White-label,
    or a token of the wrong scope."""

    status_codes = (403,)


class NotFoundError(APIStatusError):
    """404: no such workspace, dashboard, company, integration or credential."""

    status_codes = (404,)


class ConflictError(APIStatusError):
    """409: a company with this id already exists in the Link APP."""

    status_codes = (409,)


class RateLimitError(APIStatusError):
    """429: slow down. `retry_after` is the server's wish in seconds, if it gave one."""

    status_codes = (429,)

    def __init__(self, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: trouble on the server's side."""

    status_codes = (500, 502, 503, 504)


_BY_STATUS: dict[int, type[APIStatusError]] = {
    code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RateLimitError,
    )
    for code in cls.status_codes
}

_WRONG_KIND = {
    "v2": "the token may be of the wrong kind (scope) for this call: the v2 API takes the "
    "organization token or a workspace's token, not a Link APP or company token",
    "link": "the token may be of the wrong kind (scope) for this call: company management "
    "takes the Link APP token, a company's own calls its company token",
}
_PERMISSION_HINTS = (
    ("organization", "the organization name may not be configured in the Conduit web app"),
    ("white", "White-label may not be configured in the Conduit web app"),
)


def error_for_status(
    *,
    status: int,
    method: str,
    path: str,
    code: str | None,
    message: str | None,
    body: str,
    retry_after: float | None = None,
    api: str | None = None,
) -> APIStatusError:
    """Build the exception for a non-2xx response: the class comes from the status alone,
    so any body shape (HTML, empty, JSON of another shape) still maps correctly.
    `api` ("v2" or "link") sharpens the hint of a 403."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIStatusError
    hint = None
    if cls is PermissionDeniedError:
        hint = _permission_hint(code, message, body, api)
    if cls is RateLimitError:
        return RateLimitError(
            retry_after=retry_after,
            status=status,
            method=method,
            path=path,
            code=code,
            message=message,
            body=body,
        )
    return cls(
        status=status, method=method, path=path, code=code, message=message, body=body, hint=hint
    )


def _permission_hint(code: str | None, message: str | None, body: str, api: str | None) -> str:
    text = " ".join(filter(None, (code, message, body[:512]))).lower()
    wrong_kind = _WRONG_KIND.get(api or "", "the token may be of the wrong kind (scope)")
    if "token" in text:  # the server says the token is what it refuses
        return wrong_kind
    for needle, hint in _PERMISSION_HINTS:
        if needle in text:
            return hint
    if api == "link":
        return wrong_kind
    return (
        f"{wrong_kind}; otherwise check that the organization name and White-label are "
        "configured in the Conduit web app"
    )


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
