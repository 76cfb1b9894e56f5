"""Every call of the Conduit APIs, declared once.

A `Route` says what the session needs to know to send a call and to decide
what to do when it fails: its method and path template, which token it
carries, what its response is, whether repeating it is harmless, and what to
do when a repeat is not harmless and the outcome of an attempt was lost. The
resources build calls from these routes; nothing else spells a path.

Scan the table at the bottom to see the whole API surface.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

import attrs

from ._retry import http_date
from .models import (
    ClonedDashboard,
    Company,
    Dashboard,
    DataLakeFile,
    Integration,
    Workspace,
    parser,
)

__all__ = [
    "Reply",
    "Route",
    "Scope",
]

T = TypeVar("T")

#: Whose token a route carries. `organization` and `link_app` are the configured
#: tokens; `workspace` and `company` are supplied per call by the scoped views.
Scope = Literal["organization", "link_app", "workspace", "company", "dashboards"]

#: What to do after an attempt of a non-idempotent call whose outcome is unknown
#: (sent, but no answer, or a 5xx): `raise` an `OutcomeUnknownError`, or `lookup`
#: (the caller passes a function that looks for what the lost attempt made).
OnUnknown = Literal["raise", "lookup"]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class Reply(Generic[T]):
    """A 2xx answer: the parsed `value`, and when it was asked for.

    `sent_at` is the client's clock just before the request left (the
    earliest moment the server can have acted) and `date` the raw `Date`
    header: together they let the token broker measure a token's lifetime
    whatever the offset between the two clocks.
    """

    __slots__ = ("date", "sent_at", "value")

    def __init__(self, value: T, sent_at: float, date: str | None) -> None:
        self.value = value
        self.sent_at = sent_at
        self.date = date

    @property
    def server_date(self) -> float | None:
        """The server's `Date` header in Unix seconds, or None if absent or unreadable."""
        return http_date(self.date) if self.date else None

    def __repr__(self) -> str:
        return f"Reply({type(self.value).__name__}, sent_at={self.sent_at})"


@attrs.frozen
class Route(Generic[T]):
    """One call of the API. `T` is what a 2xx answer parses to.

    `path` is relative to the API's base URL, with `{name}` placeholders.
    `idempotent`: sending it twice has the effect of sending it once, so any
    failure may be retried. `settles`: an attempt that timed out may still be
    applied later (the server keeps working on it), so before it is looked
    for or reported as unknown the session waits for it to settle.
    `issues_token`: the answer carries a company token, so its timing matters.
    """

    method: Literal["GET", "POST", "DELETE"]
    api: Literal["v2", "link"]
    path: str
    scope: Scope
    parse: Callable[[Any, str], T] = attrs.field(repr=False)
    idempotent: bool = True
    on_unknown: OnUnknown = "raise"
    settles: bool = False
    issues_token: bool = False
    #: The label errors and logs use: the path template, never a raw id.
    endpoint: str = attrs.field(init=False)
    #: `path` as a %-template, `"company/%(cid)s/"`: filled by one C call from the
    #: placeholders' dict, at half the cost of `str.format` parsing `path` every time.
    template: str = attrs.field(init=False, repr=False)

    @endpoint.default
    def _endpoint(self) -> str:
        return f"{self.method} /{self.api}/{self.path}"

    @template.default
    def _template(self) -> str:
        return _PLACEHOLDER.sub(r"%(\1)s", self.path.replace("%", "%%"))


def _none(data: Any, endpoint: str) -> None:
    # A DELETE documents no body: whatever a 2xx carries, the call succeeded.
    return None


@attrs.frozen
class _Url:
    url: str


@attrs.frozen
class _DataLake:
    schema: list[DataLakeFile]


def _url(data: Any, endpoint: str) -> str:
    # The happy path by hand (cattrs would cost most of a call): anything but an object
    # with a string `url` goes to the parser, which accepts or refuses it precisely.
    if type(data) is dict:
        url = data.get("url")
        if type(url) is str:
            return url
    return _parse_url(data, endpoint).url


_parse_url = parser(_Url)


def _data_lake(data: Any, endpoint: str) -> list[DataLakeFile]:
    return parser(_DataLake)(data, endpoint).schema


# -- v2 API: the organization's workspaces and dashboards -------------------------------

LIST_WORKSPACES = Route("GET", "v2", "workspaces/", "organization", parser(list[Workspace]))
CREATE_WORKSPACE = Route(
    "POST",
    "v2",
    "workspaces/",
    "organization",
    parser(Workspace),
    idempotent=False,
    on_unknown="lookup",  # by ext_id, in a fresh listing
    settles=True,  # the server does not refuse a second workspace with the same ext_id
)
DISABLE_WORKSPACE = Route("DELETE", "v2", "workspaces/{workspace_id}/", "organization", _none)
#: The dashboards of the account the token belongs to: the organization's or a workspace's.
LIST_DASHBOARDS = Route("GET", "v2", "dashboards/", "dashboards", parser(list[Dashboard]))
SHARE_URL = Route("GET", "v2", "dashboards/{dashboard_id}/share/", "dashboards", _url)
CLONE_DASHBOARD = Route(
    "POST",
    "v2",
    "dashboards/{dashboard_id}/clone/",
    "organization",
    parser(ClonedDashboard),
    idempotent=False,
    settles=True,  # a second clone is a second copy: let a lost one land before anyone looks
)

# -- Link API: the Link APP's companies -----------------------------------------------

LIST_COMPANIES = Route(
    "GET", "link", "company/", "link_app", parser(list[Company]), issues_token=True
)
CREATE_COMPANY = Route(
    "POST",
    "link",
    "company/",
    "link_app",
    parser(Company),
    idempotent=False,
    on_unknown="lookup",  # GET the id: the server refuses a second company with it (409)
    issues_token=True,
)
GET_COMPANY = Route("GET", "link", "company/{cid}/", "link_app", parser(Company), issues_token=True)
UPDATE_COMPANY = Route(
    "POST",
    "link",
    "company/{cid}/",
    "link_app",
    parser(Company),
    idempotent=True,  # setting the same values twice is harmless
    issues_token=True,
)

# -- Link API: one company's own functions, with its token -----------------------------

INTEGRATIONS = Route("GET", "link", "credentials/", "company", parser(list[Integration]))
CONNECT_URL = Route("GET", "link", "credentials/connect/{integration_id}/", "company", _url)
DELETE_CREDENTIAL = Route("DELETE", "link", "credentials/{credential_id}/", "company", _none)
DATA_LAKE = Route("GET", "link", "data_lake/", "company", _data_lake)
