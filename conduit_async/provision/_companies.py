"""Bulk company provisioning: make every row's company exist as described, once.

"Ensure" rather than "create": a company that already exists (409) is fetched
and updated only where the row differs, so a rerun, or a resume after an
interruption, is always safe. A create whose response was lost is reconciled
by `Companies.create` itself, so nothing is ever created twice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING

from .. import _validate
from ..errors import ConduitError, ConflictError, ValidationError
from ..models import Company
from ._pool import Rows, retrying, run_pool
from ._types import BadRow, CompanySpec, Outcome, ProvisionResult

if TYPE_CHECKING:
    from ..client import Conduit

__all__ = ["CompanyRow", "check_pool_args", "company_spec", "provision_companies"]

log = logging.getLogger("conduit_async.provision")

#: One row of `companies.provision`: a spec, a mapping with the same keys, or a row
#: a reader could not parse.
CompanyRow = CompanySpec | Mapping[str, object] | BadRow

_COMPANY_KEYS = frozenset({"id", "name", "page_enabled"})


def check_pool_args(conduit: Conduit, concurrency: int, retries: int) -> None:
    """Refuse nonsense at call time, and warn when the connector would throttle the pool."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"must be a positive integer, not {concurrency!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValidationError("retries", f"must be an integer >= 0, not {retries!r}")
    limit = conduit.max_connections
    if limit and concurrency > limit:
        # A log record, not warnings.warn: it is advice about a run, not about the code.
        log.warning(
            "concurrency %d is above the client's max_connections %d: the extra workers "
            "will wait for a free connection; create the Conduit with max_connections=%d",
            concurrency,
            limit,
            concurrency,
        )


def company_spec(row: object) -> CompanySpec | BadRow:
    """The row as a checked `CompanySpec`, or a `BadRow` saying what is wrong with it.

    Checking here, before any request, gives every invalid row the same
    shape of result (attempts 0, the column named) whoever built it.
    """
    if isinstance(row, BadRow):
        return row
    if isinstance(row, Mapping):
        key = row.get("id")
        shown = key if isinstance(key, str) else ""
        unknown = sorted(str(k) for k in row if k not in _COMPANY_KEYS)
        if unknown:
            return BadRow(
                ValidationError(unknown[0], "unknown field (expected id, name, page_enabled)"),
                key=shown,
            )
        if key is None:
            return BadRow(ValidationError("id", "is required"))
        row = CompanySpec(key, row.get("name"), row.get("page_enabled"))
    if not isinstance(row, CompanySpec):
        return BadRow(
            ValidationError("row", f"expected a CompanySpec or a mapping, not {type(row).__name__}")
        )
    shown = row.id if isinstance(row.id, str) else ""
    try:
        _validate.company_id(row.id, "id")
        _validate.name(row.name, "name")
        if row.page_enabled is not None and not isinstance(row.page_enabled, bool):
            raise ValidationError(
                "page_enabled", f"must be true or false, not {row.page_enabled!r}"
            )
    except ValidationError as error:
        return BadRow(error, row.line, shown)
    return row


async def ensure_company(conduit: Conduit, spec: CompanySpec) -> tuple[Outcome, Company]:
    """Create the company, or bring an existing one in line with the spec."""
    companies = conduit.companies
    try:
        company = await companies.create(spec.id, name=spec.name, page_enabled=spec.page_enabled)
    except ConflictError:
        pass
    else:
        return "created", company
    current = await companies.get(spec.id)
    name = spec.name if spec.name is not None and spec.name != current.name else None
    page = spec.page_enabled
    if page is not None and page == current.link_page.enabled:
        page = None
    if name is None and page is None:
        return "unchanged", current
    return "updated", await companies.update(spec.id, name=name, page_enabled=page)


def provision_companies(
    conduit: Conduit, rows: Rows[CompanyRow], *, concurrency: int = 64, retries: int = 2
) -> AsyncGenerator[ProvisionResult, None]:
    """See `Companies.provision`."""
    check_pool_args(conduit, concurrency, retries)
    policy = conduit.retry

    async def work(row: CompanyRow) -> ProvisionResult:
        spec = company_spec(row)
        if isinstance(spec, BadRow):
            return ProvisionResult(spec.key, "failed", error=spec.error, attempts=0, line=spec.line)

        async def attempt(_: int) -> tuple[Outcome, Company]:
            return await ensure_company(conduit, spec)

        value, tries = await retrying(attempt, retries, policy)
        if isinstance(value, ConduitError):
            return ProvisionResult(spec.id, "failed", error=value, attempts=tries, line=spec.line)
        outcome, company = value
        return ProvisionResult(spec.id, outcome, company, attempts=tries, line=spec.line)

    return run_pool(rows, work, concurrency)
