"""Bulk company provisioning: make every row's company exist as described, once.

"Ensure" rather than "create": a company that already exists (409) is fetched
and updated only where the row differs, so a rerun, or a resume after an
interruption, is always safe. A create whose response was lost is reconciled
by `Companies.create` itself, so nothing is ever created twice. A second row
with the same id (in any case) in one input is refused, not applied.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING

from ..errors import ConduitError, ConflictError, ValidationError
from ..models import Company, unchecked
from ._keys import Duplicates
from ._pool import COMPANY_CONCURRENCY, ROW_RETRIES, Rows, check_pool_args, retrying, run_pool
from ._schema import COMPANIES, BadRow, CompanySpec
from ._types import CompanyResult, Outcome

if TYPE_CHECKING:
    from ..client import Conduit

__all__ = ["CompanyRow", "ensure_company", "provision_companies"]

#: One row of `companies.provision`: a spec, a mapping with the same keys, or a row
#: a reader could not parse.
CompanyRow = CompanySpec | Mapping[str, object] | BadRow


async def ensure_company(conduit: Conduit, spec: CompanySpec) -> tuple[Outcome, Company]:
    """Create the company, or bring an existing one in line with the spec."""
    try:
        company = await conduit.companies.create(
            spec.id, name=spec.name, page_enabled=spec.page_enabled
        )
    except ConflictError:
        return await ensure_existing(conduit, spec)
    return "created", company


async def ensure_existing(conduit: Conduit, spec: CompanySpec) -> tuple[Outcome, Company]:
    """Bring a company that already exists (its create answered 409) in line with the spec."""
    companies = conduit.companies
    current = await companies.get(spec.id)
    name = spec.name if spec.name is not None and spec.name != current.name else None
    page = spec.page_enabled
    if page is not None and page == current.link_page.enabled:
        page = None
    if name is None and page is None:
        return "unchanged", current
    return "updated", await companies.update(spec.id, name=name, page_enabled=page)


#: `CompanyResult(id, outcome, company, error, attempts, line, spec)` for a row that went
#: through: every row that does takes this path, so without attrs' frozen `__init__`.
_succeeded = unchecked(CompanyResult)


def _refused(row: BadRow) -> CompanyResult:
    return CompanyResult(row.key, "failed", error=row.error, attempts=0, line=row.line)


class _Batch:
    """The state one `companies.provision` call shares between its workers."""

    def __init__(self, conduit: Conduit, retries: int) -> None:
        self.conduit = conduit
        self.retries = retries
        self.duplicates = Duplicates(COMPANIES.key_field)

    async def work(self, row: CompanyRow, number: int) -> CompanyResult:
        # A caller's own spec is not checked here: `companies.create` checks the same
        # fields before it sends anything, and `failed` turns its refusal into the
        # result a check here would have given.
        if type(row) is CompanySpec and type(row.id) is str:
            spec = row
        else:
            checked = COMPANIES.check(row)
            if isinstance(checked, BadRow):
                return _refused(checked)
            spec = checked
        duplicate = self.duplicates.check(COMPANIES.key(spec), spec.line, number)
        if duplicate is not None:
            return CompanyResult(
                spec.id, "failed", error=duplicate, attempts=0, line=spec.line, spec=spec
            )
        # The first try inline, `ensure_company`'s create included (a coroutine layer
        # costs each suspension of the request one more frame): most rows need no more.
        try:
            try:
                company = await self.conduit.companies.create(
                    spec.id, name=spec.name, page_enabled=spec.page_enabled
                )
                outcome: Outcome = "created"
            except ConflictError:
                outcome, company = await ensure_existing(self.conduit, spec)
        except ConduitError as error:
            return await self.failed(spec, error)
        return _succeeded(spec.id, outcome, company, None, 1, spec.line, spec)

    async def failed(self, spec: CompanySpec, error: ConduitError) -> CompanyResult:
        """The row after its first try failed: refused, retried, or failed for good."""
        if isinstance(error, ValidationError):
            # Refused before anything was sent: report it as the row check would, naming
            # the column (`id`, where `create` says `company_id`).
            checked = COMPANIES.check(spec)
            reason = checked.error if isinstance(checked, BadRow) else error
            return CompanyResult(
                spec.id, "failed", error=reason, attempts=0, line=spec.line, spec=spec
            )

        async def again(_: int) -> tuple[Outcome, Company]:
            return await ensure_company(self.conduit, spec)

        value, tries = await retrying(again, error, self.retries, self.conduit.retry)
        if isinstance(value, ConduitError):
            return CompanyResult(
                spec.id, "failed", error=value, attempts=tries, line=spec.line, spec=spec
            )
        outcome, company = value
        return CompanyResult(spec.id, outcome, company, attempts=tries, line=spec.line, spec=spec)


def provision_companies(
    conduit: Conduit,
    rows: Rows[CompanyRow],
    *,
    concurrency: int = COMPANY_CONCURRENCY,
    retries: int = ROW_RETRIES,
) -> AsyncGenerator[CompanyResult, None]:
    """See `Companies.provision`."""
    check_pool_args(conduit, concurrency, retries)
    return run_pool(rows, _Batch(conduit, retries).work, concurrency)
