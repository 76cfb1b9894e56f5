"""Companies (Link API): managed with the Link APP token, and the view of one company.

Every company response carries a fresh company token; each one is handed to
the token broker, so a company just created or fetched costs no extra fetch
when its own functions are called next.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import date
from typing import TYPE_CHECKING, Any

import attrs

from .. import _validate
from .._session import Response
from ..errors import NotFoundError, ValidationError
from ..models import Company, DataLakeFile, Integration, parse, parse_list
from ..tokens import TokenBroker, TokenLease

if TYPE_CHECKING:
    from ..client import Conduit
    from ..provision import CompanyRow, ProvisionResult
    from ..provision._pool import Rows

__all__ = ["Companies", "CompanyView"]

LIST = "GET /link/company/"
CREATE = "POST /link/company/"
GET = "GET /link/company/{cid}/"
UPDATE = "POST /link/company/{cid}/"
INTEGRATIONS = "GET /link/credentials/"
CONNECT = "GET /link/credentials/connect/{integration_id}/"
DELETE_CREDENTIAL = "DELETE /link/credentials/{credential_id}/"
DATA_LAKE = "GET /link/data_lake/"


@attrs.frozen
class Companies:
    """The companies (sub-clients) of the Link APP."""

    _conduit: Conduit = attrs.field(repr=False)

    async def create(
        self, company_id: str, *, name: str | None = None, page_enabled: bool | None = None
    ) -> Company:
        """Create a company. `page_enabled` defaults to true on the server.

        A create whose response was lost is reconciled: the company is fetched,
        and if it is the one asked for it is returned, never created twice.
        A company id that already exists raises `ConflictError`.
        """
        _validate.company_id(company_id)
        _validate.name(name)
        body: dict[str, Any] = {"id": company_id}
        if name is not None:
            body["name"] = name
        if page_enabled is not None:
            body["page_enabled"] = _flag(page_enabled)
        c = self._conduit

        async def find_lost() -> Response | None:
            try:
                resp = await self._request_get(company_id)
            except NotFoundError:
                return None
            found = resp.data if isinstance(resp.data, dict) else {}
            same = (name is None or found.get("name") == name) and (
                page_enabled is None
                or (found.get("link_page") or {}).get("enabled") == page_enabled
            )
            return resp if same else None

        resp = await c._session.request(
            "POST",
            c._link("company/"),
            auth=c._link_auth,
            endpoint=CREATE,
            json_body=body,
            reconcile=find_lost,
        )
        return self._company(resp, CREATE)

    async def get(self, company_id: str) -> Company:
        """Fetch a company; the server issues it a fresh token, which the broker keeps."""
        company, _ = await self._get(company_id)
        return company

    async def update(
        self, company_id: str, *, name: str | None = None, page_enabled: bool | None = None
    ) -> Company:
        """Change a company's name or Company Page; unspecified fields are left as they are."""
        _validate.company_id(company_id)
        _validate.name(name)
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if page_enabled is not None:
            body["page_enabled"] = _flag(page_enabled)
        c = self._conduit
        resp = await c._session.request(
            "POST",
            c._link(f"company/{company_id}/"),
            auth=c._link_auth,
            endpoint=UPDATE,
            json_body=body,
            idempotent=True,  # setting the same values twice is harmless
        )
        return self._company(resp, UPDATE)

    async def list(self) -> list[Company]:
        """Every company of the Link APP, each with a token the broker keeps."""
        c = self._conduit
        resp = await c._session.request(
            "GET", c._link("company/"), auth=c._link_auth, endpoint=LIST
        )
        companies = parse_list(resp.data, Company, LIST)
        for company in companies:
            c._remember_company(company, self._lease(company, resp))
        return companies

    async def token(self, company_id: str) -> str:
        """A token of the company with life left, e.g. to hand to a browser.

        Served from the cache when fresh; refreshed in the background when
        half its life is gone; fetched (once, for all callers) when missing or
        nearly expired.
        """
        return await self._conduit.tokens.company_token(_validate.company_id(company_id))

    def provision(
        self, rows: Rows[CompanyRow], *, concurrency: int = 64, retries: int = 2
    ) -> AsyncGenerator[ProvisionResult, None]:
        """Make every row's company exist as described; yield a result per row as it finishes.

        `rows` is any iterable or async iterable of `CompanySpec` (or dicts with
        the keys `id`, `name`, `page_enabled`), read lazily: memory is bounded by
        `concurrency`, never by the number of rows. A plain iterable is read on
        the event loop, so it must not block; give a slow source (a network
        cursor, a pipe) as an async iterable. Each row is *ensured*:
        created, or on a 409 fetched and updated only where it differs, so the
        outcome is `created`, `updated`, `unchanged` or `failed`, and a rerun is
        always safe. A create whose response was lost is reconciled, never
        repeated. Company tokens from the responses go to the token broker.

        One bad row never stops the batch: invalid rows and API errors become
        `failed` results carrying the typed `ConduitError`; transient failures
        that outlive the session's retries get `retries` more row-level tries.
        Only a problem no row can escape (a missing or refused Link APP token,
        a closed client) is raised. A 429 pauses every worker. Stopping early
        (`break`, `aclose()`, cancellation) cancels the workers and waits for
        them. Keep `concurrency` at or below the client's `max_connections`.
        """
        from ..provision import provision_companies  # provision imports resources

        return provision_companies(self._conduit, rows, concurrency=concurrency, retries=retries)

    # -- internals shared with the broker ----------------------------------------

    async def _request_get(self, company_id: str) -> Response:
        _validate.company_id(company_id)
        c = self._conduit
        return await c._session.request(
            "GET", c._link(f"company/{company_id}/"), auth=c._link_auth, endpoint=GET
        )

    async def _get(self, company_id: str) -> tuple[Company, TokenLease]:
        resp = await self._request_get(company_id)
        company = parse(resp.data, Company, GET)
        lease = self._lease(company, resp)
        self._conduit._remember_company(company, lease)
        return company, lease

    def _company(self, resp: Response, endpoint: str) -> Company:
        company = parse(resp.data, Company, endpoint)
        self._conduit._remember_company(company, self._lease(company, resp))
        return company

    def _lease(self, company: Company, resp: Response) -> TokenLease:
        return self._conduit.tokens.lease(
            company.api_token, sent_at=resp.sent_at, server_date=resp.server_date
        )


@attrs.frozen
class CompanyAuth:
    """Authorizes a request with one company's token, through the broker."""

    broker: TokenBroker = attrs.field(repr=False)
    company_id: str

    def cached(self) -> str | None:
        return self.broker.cached_company_token(self.company_id)

    async def token(self) -> str:
        return await self.broker.company_token(self.company_id)

    async def invalidate(self, token: str) -> bool:
        return await self.broker.company_refused(self.company_id, token)


@attrs.frozen
class _DataLake:
    schema: list[DataLakeFile]


@attrs.frozen
class _Url:
    url: str


@attrs.frozen
class CompanyView:
    """One company, seen with its own token: `await conduit.company("acme1").connect_url(7)`.

    The token is the broker's concern: fetched when missing, refreshed before
    it expires, replaced once if the server refuses it.
    """

    _conduit: Conduit = attrs.field(repr=False)
    company_id: str

    async def token(self) -> str:
        """A token of this company with life left."""
        return await self._conduit.tokens.company_token(self.company_id)

    async def get(self) -> Company:
        """The company itself (with a freshly issued token)."""
        return await self._conduit.companies.get(self.company_id)

    async def integrations(self) -> list[Integration]:
        """The integrations available to the company, with its credentials for each."""
        resp = await self._request("GET", "credentials/", INTEGRATIONS)
        return parse_list(resp.data, Integration, INTEGRATIONS)

    async def connect_url(self, integration_id: str | int) -> str:
        """A page where the company's user connects a data source of this integration."""
        segment = _validate.path_segment(integration_id, "integration_id")
        resp = await self._request("GET", f"credentials/connect/{segment}/", CONNECT)
        return parse(resp.data, _Url, CONNECT).url

    async def delete_credential(self, credential_id: str | int) -> None:
        """Remove one of the company's connected credentials."""
        segment = _validate.path_segment(credential_id, "credential_id")
        await self._request("DELETE", f"credentials/{segment}/", DELETE_CREDENTIAL)

    async def data_lake(
        self,
        *,
        integration: str | int,
        date_from: date | str,
        date_to: date | str,
        account: str | int | None = None,
    ) -> list[DataLakeFile]:
        """The days of data extracted for the company; each file's `url` downloads a CSV."""
        params = {
            "integration": _validate.path_segment(integration, "integration"),
            "date_from": _iso_date(date_from, "date_from"),
            "date_to": _iso_date(date_to, "date_to"),
        }
        if account is not None:
            params["account"] = _validate.path_segment(account, "account")
        resp = await self._request("GET", "data_lake/", DATA_LAKE, params=params)
        return parse(resp.data, _DataLake, DATA_LAKE).schema

    async def _request(
        self, method: str, path: str, endpoint: str, params: dict[str, str] | None = None
    ) -> Response:
        c = self._conduit
        return await c._session.request(
            method,
            c._link(path),
            auth=CompanyAuth(c.tokens, self.company_id),
            endpoint=endpoint,
            params=params,
        )


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("page_enabled", f"must be true or false, not {value!r}")
    return value


def _iso_date(value: date | str, argument: str) -> str:
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise ValidationError(argument, "must be a date or a YYYY-MM-DD string") from None
