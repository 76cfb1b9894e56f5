"""The fake Conduit's data and rules, with no I/O.

Every API call is a method that takes already-parsed input and the server's current time
and returns the JSON payload (``None`` for "204, no body") or raises :class:`ApiError`.
Kept apart from aiohttp so the rules of spec sections 2-5 read in one place, and so the
server module is only about HTTP, authorization and faults. What happened (a token
issued, a company created) is announced as an event to a listener; counting is the
server's business.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

import attrs

from ._events import (
    CompanyCreated,
    DashboardCloned,
    Listener,
    TokenIssued,
    TokenRevoked,
    WorkspaceCreated,
)

__all__ = [
    "Account",
    "ApiError",
    "Company",
    "Credential",
    "Dashboard",
    "FakeState",
    "Grant",
    "Integration",
    "IssuedToken",
    "TokenKind",
    "Workspace",
]

MAX_TEXT = 1024
"""Longest company id, name, workspace name or ext_id accepted."""

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

SEED_DASHBOARDS = ("Sales Dashboard", "Marketing Overview", "Finance KPIs")
SEED_INTEGRATIONS = ((1, "Google Ads"), (2, "Facebook Ads"), (3, "Google Analytics"))


class ApiError(Exception):
    """An error response: status and the ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class TokenKind(enum.Enum):
    """Which of the spec's four kinds of bearer token a token is."""

    ORGANIZATION = "organization"
    LINK = "link"
    WORKSPACE = "workspace"
    COMPANY = "company"


class Grant(NamedTuple):
    """What a bearer token stands for. A tuple because one is built per company token
    issued, on the hot path."""

    kind: TokenKind
    subject: int | str | None
    """The workspace id, or the lower-cased company id; None for the organization and
    Link APP tokens."""
    expires_at: int | None
    """Server time (whole Unix seconds) from which a company token is refused; None for
    tokens that do not expire."""


@attrs.frozen
class IssuedToken:
    """A company token as issued: the ``api_token`` of a company response."""

    token: str = attrs.field(repr=False)
    expires_at: int
    """Server time (whole Unix seconds) from which the token is refused."""


@attrs.frozen
class Company:
    """A company of the Link APP as the server holds it (read-only snapshot)."""

    id: str
    """As first created; lookups ignore case."""
    name: str | None
    page_enabled: bool
    created_at: str
    """ISO 8601 UTC with ``Z``, whole seconds."""
    page_slug: str = attrs.field(repr=False)
    """Fixed at creation so the page URL stays the same across disable/enable."""

    @property
    def key(self) -> str:
        return self.id.lower()


@attrs.frozen
class Workspace:
    """An enabled sub-workspace. Disabled ones are removed."""

    id: int
    name: str
    ext_id: str | None
    token: str = attrs.field(repr=False)


@attrs.frozen
class Dashboard:
    id: int
    name: str
    workspace: int | None
    """The owning workspace's id; None for the organization account's own dashboards."""
    share_slug: str = attrs.field(repr=False)


@attrs.frozen
class Integration:
    id: int
    name: str


@attrs.frozen
class Account:
    id: int
    name: str
    native_id: str


@attrs.frozen
class Credential:
    """A data-source login a company connected, with the accounts it reaches."""

    id: int
    integration_id: int
    name: str
    created_at: str
    accounts: tuple[Account, ...] = ()


def iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def new_token(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


# Input validation: each helper raises a 400 that names the field.


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def expect_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object")
    return body


def _text(obj: Mapping[str, object], field: str, *, required: bool) -> str | None:
    value = obj.get(field)
    if value is None:
        if required:
            raise _invalid(f"{field!r} is required")
        return None
    if not isinstance(value, str):
        raise _invalid(f"{field!r} must be a string")
    if required and not value:
        raise _invalid(f"{field!r} must not be empty")
    if len(value) > MAX_TEXT:
        raise _invalid(f"{field!r} must be at most {MAX_TEXT} characters")
    return value


def _flag(obj: Mapping[str, object], field: str, default: bool) -> bool:
    value = obj.get(field, default)
    if not isinstance(value, bool):
        raise _invalid(f"{field!r} must be true or false")
    return value


def check_company_id(value: object) -> str:
    if value is None:
        raise _invalid("'id' is required")
    if not isinstance(value, str):
        raise _invalid("'id' must be a string")
    if not (0 < len(value) <= MAX_TEXT and value.isascii() and value.isalnum()):
        raise _invalid(f"'id' must be 1 to {MAX_TEXT} characters, only A-Z, a-z and 0-9")
    return value


def _query_date(query: Mapping[str, str], field: str) -> dt.date:
    raw = query.get(field)
    if raw is None:
        raise _invalid(f"query parameter {field!r} is required (YYYY-MM-DD)")
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise _invalid(f"query parameter {field!r} must be a date YYYY-MM-DD") from None


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} does not exist")


class FakeState:
    """Everything the fake server knows, and the operations of the API on it.

    Lookups are dicts keyed by token, lower-cased company id and numeric id, so each call
    costs the same however many objects exist.
    """

    def __init__(
        self,
        *,
        token_ttl: float,
        org_token: str,
        link_token: str,
        on_event: Listener,
        revoke_on_reissue: bool = False,
    ) -> None:
        self.token_ttl = token_ttl
        self.revoke_on_reissue = revoke_on_reissue
        """When a company is issued a token, its earlier ones stop working."""
        self._on_event = on_event
        self.root = "http://fake-conduit.invalid/"
        """Prefix of the URLs the server hands out; set to the real one when it starts."""
        self.org_token = org_token
        self.link_token = link_token
        self.tokens: dict[str, Grant] = {
            org_token: Grant(TokenKind.ORGANIZATION, None, None),
            link_token: Grant(TokenKind.LINK, None, None),
        }
        self.revoked: set[str] = set()
        """Company tokens revoked because a newer one was issued, so that a request
        carrying one can be told apart from one with a token never issued."""
        self._latest: dict[str, str] = {}
        """Company key -> the token issued to it last."""
        self.companies: dict[str, Company] = {}
        self.workspaces: dict[int, Workspace] = {}
        self.dashboards: dict[int, Dashboard] = {}
        self.dashboards_by_owner: dict[int | None, list[int]] = {None: []}
        self.integrations: dict[int, Integration] = {
            iid: Integration(iid, name) for iid, name in SEED_INTEGRATIONS
        }
        self.credentials: dict[str, dict[int, Credential]] = {}
        """Per company key; filled on the company's first section-4 call (or a helper)."""
        self._workspace_ids = 0
        self._dashboard_ids = 0
        self._credential_ids = 0
        self._account_ids = 0
        for name in SEED_DASHBOARDS:
            self.add_dashboard(name, None)

    # -- tokens ----------------------------------------------------------------------

    def issue_company_token(self, key: str, now: float) -> IssuedToken:
        """A new token for company ``key``, valid until the whole second ``now`` plus
        the lifetime falls in (truncated, as a server storing whole seconds would)."""
        token = new_token("ct_")
        expires_at = int(now + self.token_ttl)
        tokens = self.tokens
        tokens[token] = Grant(TokenKind.COMPANY, key, expires_at)
        earlier = self._latest.get(key)
        self._latest[key] = token
        self._on_event(TokenIssued(key))
        if self.revoke_on_reissue and earlier is not None and earlier in tokens:
            del tokens[earlier]
            self.revoked.add(earlier)
            self._on_event(TokenRevoked(key))
        return IssuedToken(token, expires_at)

    def revoke_token(self, token: str) -> None:
        """Forget ``token``; a workspace gets a new token at once, as if Conduit had
        rotated it, so listing workspaces again recovers."""
        grant = self.tokens.pop(token)
        if grant.kind is TokenKind.WORKSPACE:
            assert isinstance(grant.subject, int)
            workspace = self.workspaces[grant.subject]
            fresh = new_token("wt_")
            self.tokens[fresh] = grant
            self.workspaces[workspace.id] = attrs.evolve(workspace, token=fresh)

    # -- objects, as the helpers and the API create them ------------------------------

    def add_company(
        self, company_id: str, name: str | None, page_enabled: bool, now: float
    ) -> Company:
        company_id = check_company_id(company_id)
        if company_id.lower() in self.companies:
            raise _company_exists(company_id)
        company = Company(company_id, name, page_enabled, iso_utc(now), secrets.token_hex(8))
        self.companies[company.key] = company
        return company

    def add_workspace(self, name: str, ext_id: str | None) -> Workspace:
        self._workspace_ids += 1
        workspace = Workspace(self._workspace_ids, name, ext_id, new_token("wt_"))
        self.workspaces[workspace.id] = workspace
        self.tokens[workspace.token] = Grant(TokenKind.WORKSPACE, workspace.id, None)
        self.dashboards_by_owner[workspace.id] = []
        return workspace

    def add_dashboard(self, name: str, workspace_id: int | None) -> Dashboard:
        if workspace_id not in self.dashboards_by_owner:
            raise KeyError(f"no workspace {workspace_id}")
        self._dashboard_ids += 1
        dashboard = Dashboard(self._dashboard_ids, name, workspace_id, secrets.token_hex(8))
        self.dashboards[dashboard.id] = dashboard
        self.dashboards_by_owner[workspace_id].append(dashboard.id)
        return dashboard

    def add_credential(
        self,
        key: str,
        integration_id: int,
        name: str,
        accounts: list[tuple[str, str]],
        now: float,
    ) -> Credential:
        if integration_id not in self.integrations:
            raise KeyError(f"no integration {integration_id}")
        credentials = self.credentials_of(key, now)
        self._credential_ids += 1
        made = []
        for account_name, native_id in accounts:
            self._account_ids += 1
            made.append(Account(self._account_ids, account_name, native_id))
        credential = Credential(
            self._credential_ids, integration_id, name, iso_utc(now), tuple(made)
        )
        credentials[credential.id] = credential
        return credential

    def credentials_of(self, key: str, now: float) -> dict[int, Credential]:
        """A company's credentials; the first look seeds one Google Ads login so that
        list calls always have the nested shape to show."""
        credentials = self.credentials.get(key)
        if credentials is None:
            credentials = self.credentials[key] = {}
            self.add_credential(
                key, 1, f"ads@{key}.example", [("Main account", "123-456-7890")], now
            )
        return credentials

    # -- JSON shapes -------------------------------------------------------------------

    def company_json(self, company: Company, token: IssuedToken) -> dict[str, Any]:
        page_url = f"{self.root}_fake/page/{company.page_slug}/" if company.page_enabled else None
        return {
            "id": company.id,
            "name": company.name,
            "created_at": company.created_at,
            "link_page": {"url": page_url, "enabled": company.page_enabled},
            "api_token": {"token": token.token, "expires_at": token.expires_at},
        }

    @staticmethod
    def workspace_json(workspace: Workspace) -> dict[str, Any]:
        return {
            "id": workspace.id,
            "ext_id": workspace.ext_id,
            "name": workspace.name,
            "token": workspace.token,
        }

    def _integrations_json(self, key: str, now: float, *, connected_only: bool) -> list[Any]:
        by_integration: dict[int, list[dict[str, Any]]] = {iid: [] for iid in self.integrations}
        for credential in self.credentials_of(key, now).values():
            by_integration[credential.integration_id].append(
                {
                    "name": credential.name,
                    "id": credential.id,
                    "created_at": credential.created_at,
                    "accounts": [
                        {"name": a.name, "id": a.id, "native_id": a.native_id}
                        for a in credential.accounts
                    ],
                }
            )
        return [
            {"id": integration.id, "name": integration.name, "credentials": credentials}
            for integration in self.integrations.values()
            if (credentials := by_integration[integration.id]) or not connected_only
        ]

    # -- section 2: workspaces and dashboards ------------------------------------------

    def list_workspaces(self) -> list[dict[str, Any]]:
        return [self.workspace_json(w) for w in self.workspaces.values()]

    def create_workspace(self, body: object) -> dict[str, Any]:
        obj = expect_object(body)
        name = _text(obj, "name", required=True)
        ext_id = _text(obj, "ext_id", required=False)
        assert name is not None
        workspace = self.add_workspace(name, ext_id)
        self._on_event(WorkspaceCreated(ext_id))
        return self.workspace_json(workspace)

    def disable_workspace(self, workspace_id: int) -> None:
        workspace = self.workspaces.pop(workspace_id, None)
        if workspace is None:
            raise not_found(f"workspace {workspace_id}")
        del self.tokens[workspace.token]
        del self.dashboards_by_owner[workspace_id]

    def list_dashboards(self, owner: int | None) -> list[dict[str, Any]]:
        dashboards = self.dashboards
        return [
            {"id": d.id, "name": d.name}
            for d in (dashboards[i] for i in self.dashboards_by_owner[owner])
        ]

    def share_url(self, dashboard_id: int, owner: int | None) -> dict[str, Any]:
        dashboard = self.dashboards.get(dashboard_id)
        if dashboard is None or dashboard.workspace != owner:
            raise not_found(f"dashboard {dashboard_id}")
        return {"url": f"{self.root}_fake/share/{dashboard.share_slug}/"}

    def clone_dashboard(self, dashboard_id: int, body: object) -> dict[str, Any]:
        obj = expect_object(body)
        workspace_id = obj.get("workspace")
        if workspace_id is None:
            raise _invalid("'workspace' is required")
        if not isinstance(workspace_id, int) or isinstance(workspace_id, bool):
            raise _invalid("'workspace' must be an integer workspace id")
        name = _text(obj, "name", required=False)
        source = self.dashboards.get(dashboard_id)
        if source is None or source.workspace is not None:
            raise not_found(f"dashboard {dashboard_id}")
        if workspace_id not in self.workspaces:
            raise not_found(f"workspace {workspace_id}")
        clone = self.add_dashboard(source.name if name is None else name, workspace_id)
        self._on_event(DashboardCloned(clone.id))
        return {
            "id": clone.id,
            "name": clone.name,
            "url": f"{self.root}_fake/dashboard/{clone.id}/",
        }

    # -- section 3: companies ----------------------------------------------------------

    def create_company(self, body: object, now: float) -> dict[str, Any]:
        obj = expect_object(body)
        company_id = check_company_id(obj.get("id"))
        name = _text(obj, "name", required=False)
        page_enabled = _flag(obj, "page_enabled", True)
        company = self.add_company(company_id, name, page_enabled, now)
        self._on_event(CompanyCreated(company.key))
        return self.company_json(company, self.issue_company_token(company.key, now))

    def list_companies(self, include_connections: bool, now: float) -> list[dict[str, Any]]:
        """Every company, each a full company object and so each with a fresh token."""
        companies = []
        for company in self.companies.values():
            entry = self.company_json(company, self.issue_company_token(company.key, now))
            if include_connections:
                entry["connections"] = self._integrations_json(
                    company.key, now, connected_only=True
                )
            companies.append(entry)
        return companies

    def get_company(self, company_id: str, now: float) -> dict[str, Any]:
        company = self._company(company_id)
        return self.company_json(company, self.issue_company_token(company.key, now))

    def edit_company(self, company_id: str, body: object, now: float) -> dict[str, Any]:
        company = self._company(company_id)
        obj = expect_object(body)
        changes: dict[str, Any] = {}
        if "name" in obj:
            changes["name"] = _text(obj, "name", required=False)
        if "page_enabled" in obj:
            changes["page_enabled"] = _flag(obj, "page_enabled", company.page_enabled)
        if changes:
            company = attrs.evolve(company, **changes)
            self.companies[company.key] = company
        return self.company_json(company, self.issue_company_token(company.key, now))

    def _company(self, company_id: str) -> Company:
        company = self.companies.get(company_id.lower())
        if company is None:
            raise not_found(f"company {company_id!r}")
        return company

    # -- section 4: a company's own functions ------------------------------------------

    def list_credentials(self, key: str, now: float) -> list[Any]:
        return self._integrations_json(key, now, connected_only=False)

    def connect_url(self, key: str, integration_id: int) -> dict[str, Any]:
        if integration_id not in self.integrations:
            raise not_found(f"integration {integration_id}")
        return {"url": f"{self.root}_fake/connect/{key}/{integration_id}/"}

    def delete_credential(self, key: str, credential_id: int, now: float) -> None:
        if self.credentials_of(key, now).pop(credential_id, None) is None:
            raise not_found(f"credential {credential_id}")

    def data_lake(self, key: str, query: Mapping[str, str], now: float) -> dict[str, Any]:
        raw_integration = query.get("integration")
        if raw_integration is None:
            raise _invalid("query parameter 'integration' is required")
        if not raw_integration.isdigit():
            raise _invalid("query parameter 'integration' must be an integration id")
        integration_id = int(raw_integration)
        date_from = _query_date(query, "date_from")
        date_to = _query_date(query, "date_to")
        if date_from > date_to:
            raise _invalid("'date_from' must not be after 'date_to'")
        if integration_id not in self.integrations:
            raise not_found(f"integration {integration_id}")
        account = query.get("account")
        suffix = "" if account is None else "?" + urlencode({"account": account})
        updated_at = iso_utc(now)
        rows = []
        day = date_from
        one_day = dt.timedelta(days=1)
        while day <= date_to:
            text = day.isoformat()
            rows.append(
                {
                    "date": text,
                    "url": f"{self.root}_fake/data/{key}/{integration_id}/{text}.csv{suffix}",
                    "service_status": "ok",
                    "data_status": "ready",
                    "data_updated_at": updated_at,
                }
            )
            day += one_day
        return {"schema": rows}


def _company_exists(company_id: str) -> ApiError:
    return ApiError(
        409, "company_exists", f"a company with id {company_id!r} already exists in this Link APP"
    )
