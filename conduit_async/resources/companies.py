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

from .. import _json, _validate, routes
from ..errors import NotFoundError, ValidationError
from ..models import Company, DataLakeFile, Integration
from ..provision._pool import COMPANY_CONCURRENCY, ROW_RETRIES
from ..routes import Reply
from ..tokens import TokenBroker, TokenLease

if TYPE_CHECKING:
    from .._session import Lookup
    from ..client import Conduit
    from ..provision import CompanyResult, CompanyRow
    from ..provision._pool import Rows

__all__ = ["Companies", "CompanyAuth", "CompanyView"]


@attrs.frozen
class Companies:
    """The companies (sub-clients) of the Link APP."""

    _conduit: Conduit = attrs.field(repr=False)
    #: `_created`, bound once: a create allocates nothing for the lookup it rarely needs.
    _lookup: Lookup[Company] = attrs.field(init=False, repr=False, eq=False)

    @_lookup.default
    def _bind_lookup(self) -> Lookup[Company]:
        return self._created

    async def create(
        self, company_id: str, *, name: str | None = None, page_enabled: bool | None = None
    ) -> Company:
        """Create a company. `page_enabled` defaults to true on the server.

        A create whose response was lost is reconciled: the company is fetched,
        and if it is the one asked for it is returned, never created twice.
        A company id that already exists raises `ConflictError`.
        """
        _validate.company_id(company_id)
        body: dict[str, Any] = {"id": company_id}
        if name is not None:
            body["name"] = _validate.name(name)
        if page_enabled is not None:
            body["page_enabled"] = _flag(page_enabled)
        sending = self._conduit.request(routes.CREATE_COMPANY, json=body, lookup=self._lookup)
        del body  # encoded: held over the round trip, it is one more object for the GC
        return self._remember(await sending)

    async def _created(self, sent: bytes | None) -> Reply[Company] | None:
        """What a create whose response was lost made: the company, if it is the one the
        lost attempt's body asked for."""
        if not sent:
            return None  # (a create always sends its body)
        asked = _json.loads(sent)
        try:
            reply = await self._conduit.request(routes.GET_COMPANY, cid=asked["id"])
        except NotFoundError:
            return None
        found = reply.value
        name, page_enabled = asked.get("name"), asked.get("page_enabled")
        same = (name is None or found.name == name) and (
            page_enabled is None or found.link_page.enabled == page_enabled
        )
        return reply if same else None

    async def get(self, company_id: str) -> Company:
        """Fetch a company; the server issues it a fresh token, which the broker keeps."""
        _validate.company_id(company_id)
        return self._remember(await self._conduit.request(routes.GET_COMPANY, cid=company_id))

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
        reply = await self._conduit.request(routes.UPDATE_COMPANY, json=body, cid=company_id)
        return self._remember(reply)

    async def list(self) -> list[Company]:
        """Every company of the Link APP, each with a token the broker keeps."""
        reply = await self._conduit.request(routes.LIST_COMPANIES)
        tokens = self._conduit.tokens
        sent_at, server_date = reply.sent_at, reply.server_date
        for company in reply.value:
            tokens.remember_issued(company.id, company.api_token, sent_at, server_date)
        return reply.value

    async def token(self, company_id: str) -> str:
        """A token of the company with life left, e.g. to hand to a browser.

        Served from the cache when fresh; refreshed in the background when
        half its life is gone; fetched (once, for all callers) when missing or
        nearly expired.
        """
        return await self._conduit.tokens.company_token(_validate.company_id(company_id))

    def provision(
        self,
        rows: Rows[CompanyRow],
        *,
        concurrency: int = COMPANY_CONCURRENCY,
        retries: int = ROW_RETRIES,
    ) -> AsyncGenerator[CompanyResult, None]:
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
        a closed client) is raised. A 429 pauses every worker.

        A second row with the same id (ids compare without regard to case) is
        not applied: it fails with `ValidationError("id", "duplicate of line
        N")` ("row N" for rows without a line), so which row wins never
        depends on timing.

        To stop early, close the generator: `async with
        contextlib.aclosing(conduit.companies.provision(rows)) as results:`
        and `break` inside it. Closing it, or cancelling the task that
        iterates it, stops the workers at once: the rows in flight are
        cancelled and waited for (a row cancelled in flight may already have
        been applied; a rerun reports it `unchanged`). A bare `break` leaves
        the generator open while it is referenced: up to `concurrency` rows in
        flight finish unreported until it is garbage-collected. Keep
        `concurrency` at or below the client's `max_connections`.
        """
        from ..provision import provision_companies  # provision builds on this module

        return provision_companies(self._conduit, rows, concurrency=concurrency, retries=retries)

    async def fetch_lease(self, company_id: str) -> TokenLease:
        """Fetch the company for a fresh token, and return that token's lease (the
        broker's way to a new token)."""
        reply = await self._conduit.request(routes.GET_COMPANY, cid=company_id)
        company = reply.value
        return self._conduit.tokens.remember_issued(
            company.id, company.api_token, reply.sent_at, reply.server_date
        )

    def _remember(self, reply: Reply[Company]) -> Company:
        company = reply.value
        self._conduit.tokens.remember_issued(
            company.id, company.api_token, reply.sent_at, reply.server_date
        )
        return company


@attrs.frozen(weakref_slot=False)
class CompanyAuth:
    """Authorizes a request with one company's token, through the broker."""

    broker: TokenBroker = attrs.field(repr=False)
    company_id: str

    def cached(self) -> str | None:
        return self.broker.cached_company_token(self.company_id)

    async def token(self) -> str:
        # The session asks only after `cached()` missed: no second look (nor second miss).
        return await self.broker.fetched_company_token(self.company_id)

    async def invalidate(self, token: str) -> bool:
        return await self.broker.company_refused(self.company_id, token)


@attrs.frozen(weakref_slot=False)
class CompanyView:
    """One company, seen with its own token: `await conduit.company("acme1").connect_url(7)`.

    The token is the broker's concern: fetched when missing, refreshed before
    it expires, replaced once if the server refuses it.
    """

    _conduit: Conduit = attrs.field(repr=False)
    company_id: str
    _auth: CompanyAuth = attrs.field(init=False, repr=False)

    @_auth.default
    def _make_auth(self) -> CompanyAuth:
        return CompanyAuth(self._conduit.tokens, self.company_id)

    async def token(self) -> str:
        """A token of this company with life left."""
        return await self._conduit.tokens.company_token(self.company_id)

    async def get(self) -> Company:
        """The company itself (with a freshly issued token)."""
        return await self._conduit.companies.get(self.company_id)

    async def integrations(self) -> list[Integration]:
        """The integrations available to the company, with its credentials for each."""
        return (await self._conduit.request(routes.INTEGRATIONS, auth=self._auth)).value

    async def connect_url(self, integration_id: str | int) -> str:
        """A page where the company's user connects a data source of this integration."""
        segment = _validate.path_segment(integration_id, "integration_id")
        reply = await self._conduit.request(
            routes.CONNECT_URL, auth=self._auth, integration_id=segment
        )
        return reply.value

    async def delete_credential(self, credential_id: str | int) -> None:
        """Remove one of the company's connected credentials.

        A retry that finds it gone after an attempt whose answer was lost
        counts as done: that attempt deleted it.
        """
        segment = _validate.path_segment(credential_id, "credential_id")
        await self._conduit.request(
            routes.DELETE_CREDENTIAL, auth=self._auth, credential_id=segment
        )

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
        reply = await self._conduit.request(routes.DATA_LAKE, auth=self._auth, params=params)
        return reply.value


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
