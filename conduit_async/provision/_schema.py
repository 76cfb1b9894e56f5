"""What a row of bulk provisioning is: its spec, and one schema per kind of row.

A schema holds every fact about one kind's rows, declared once: the columns
(required, optional, and which may be left off the end of a CSV line), how a
cell becomes a value (from CSV text or from JSON), what is valid, what
identifies a row (company ids compare without regard to case; a workspace is
its `ext_id`), and a fingerprint of the fields the row manages. The engines
check library rows with it, the CLI reads files through it, and `--resume`
and the results files compare rows by its key and fingerprint.

Specs are deliberately lenient: they are not validated when built, because a
bad row in a million-row file must become a `failed` result with its line
number, not an exception in the middle of reading.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar

import attrs

from .. import _validate
from ..errors import ConduitError, ValidationError

__all__ = [
    "COMPANIES",
    "SCHEMAS",
    "WORKSPACES",
    "BadRow",
    "CompanySpec",
    "Kind",
    "RowSchema",
    "WorkspaceSpec",
    "parse_flag",
]

#: The two kinds of rows bulk provisioning knows.
Kind = Literal["companies", "workspaces"]


@attrs.frozen
class CompanySpec:
    """A company that should exist: `conduit.companies.provision(rows)` makes it so.

    `name` and `page_enabled` left as None are not managed: not sent on
    create (the server's defaults apply) and not compared with an existing
    company. `line` is where the row came from in a file, carried into its
    result.
    """

    id: str
    name: str | None = None
    page_enabled: bool | None = None
    line: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class WorkspaceSpec:
    """A sub-workspace that should exist, found by its `ext_id` (your own id for it).

    `ext_id` is required: without it an existing workspace cannot be told
    apart from a new one, and a rerun would create duplicates.
    """

    name: str
    ext_id: str
    line: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class BadRow:
    """A row that could not be read or is not valid (broken CSV quoting, bad JSON, a bad id).

    File readers yield it in place of a spec so that `provision` reports it,
    with its line number, as a `failed` result among the others instead of
    stopping the batch. `key` is the row's id or ext_id and `name` its name,
    as far as they could be read (a failed workspace's result keeps both).
    """

    error: ConduitError
    line: int | None = None
    key: str = ""
    name: str = ""


S = TypeVar("S", CompanySpec, WorkspaceSpec)

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def parse_flag(value: object, column: str = "page_enabled") -> bool | None:
    """A boolean cell: true/false, yes/no, 1/0 (any case), or empty/null for "not given"."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    shown = value if isinstance(value, (str, int, float)) else type(value).__name__
    raise ValidationError(column, f"must be true/false, yes/no or 1/0, not {shown!r}")


def _json_text(value: object, column: str) -> str | None:
    """A text field from JSON: a string, a whole number (ids are often numeric), or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValidationError(column, f"must be a string, not {type(value).__name__}")


def _cell_text(value: str) -> str:
    return value


def _cell_optional(value: str) -> str | None:
    """An optional text cell: empty means "not given"."""
    return value or None


#: How one field's value is read: from a CSV cell (text) and from a JSON value.
_Coerce = Callable[[str], object]
_CoerceJson = Callable[[object, str], object]


@attrs.frozen
class _Field:
    name: str
    from_text: _Coerce
    from_json: _CoerceJson = _json_text


@attrs.frozen
class RowSchema(Generic[S]):
    """Everything about one kind's rows; see the module docstring.

    `fields` are in spec order (the spec is built positionally from them);
    `required` must be present in a file's header; `may_omit` may be left off
    the end of a CSV line, meaning "not given" as an empty cell does.
    """

    kind: Kind
    spec: type[S]
    fields: tuple[_Field, ...]
    required: tuple[str, ...]
    key_field: str
    may_omit: tuple[str, ...]
    #: The fields whose values a row manages (its fingerprint), beside its identity.
    managed: tuple[str, ...]
    _rules: Callable[[S], None]
    _identity: Callable[[str], str]
    #: Every column, required first.
    columns: tuple[str, ...] = attrs.field(init=False)

    @columns.default
    def _columns(self) -> tuple[str, ...]:
        return self.required + tuple(f.name for f in self.fields if f.name not in self.required)

    def identity(self, key: str) -> str:
        """A row's key as provisioning compares it (a company id lower-cased, as the API does)."""
        return self._identity(key)

    def key(self, spec: S) -> str:
        """What identifies the spec's row, within a batch and across runs."""
        return self._identity(getattr(spec, self.key_field))

    def fingerprint(self, spec: S) -> str:
        """A short digest of the fields the row manages: equal fingerprints, same row.

        Stable across processes and versions (it is kept in results files for
        `--resume`): blake2b of the managed values as JSON, 16 hex digits.
        """
        values = json.dumps([getattr(spec, name) for name in self.managed], ensure_ascii=False)
        return hashlib.blake2b(values.encode(), digest_size=8).hexdigest()

    def check(self, row: object) -> S | BadRow:
        """A library row (a spec or a mapping with the spec's keys) as a checked spec, or a
        `BadRow` saying what is wrong with it. Values are taken as given: a flag must be a
        bool, text a str (a file's cells are read by `read_text` or `read_json`)."""
        if isinstance(row, BadRow):
            return row
        if isinstance(row, Mapping):
            refused = self._unknown(row)
            if refused is not None:
                return refused
            row = self._build([row.get(f.name) for f in self.fields], None)
        if not isinstance(row, self.spec):
            return BadRow(
                ValidationError(
                    "row",
                    f"expected a {self.spec.__name__} or a mapping, not {type(row).__name__}",
                )
            )
        return self._checked(row)

    def read_text(self, cells: Mapping[str, str], line: int) -> S | BadRow:
        """A CSV row (column -> cell text) as a checked spec or a `BadRow`."""
        return self._read(cells, line, text=True)

    def read_json(self, data: Mapping[str, object], line: int) -> S | BadRow:
        """A JSON Lines object as a checked spec or a `BadRow` (numbers are taken as ids,
        flags as in CSV)."""
        refused = self._unknown(data, line)
        if refused is not None:
            return refused
        for name in self.required:
            if name not in data:
                return BadRow(
                    ValidationError(name, "is required"), line, self._shown(data), self._name(data)
                )
        return self._read(data, line, text=False)

    def _read(self, cells: Mapping[str, object], line: int, *, text: bool) -> S | BadRow:
        values: list[object] = []
        try:
            for f in self.fields:
                value = cells.get(f.name)
                if text:
                    values.append(None if value is None else f.from_text(str(value)))
                else:
                    values.append(f.from_json(value, f.name))
        except ValidationError as error:
            return BadRow(error, line, self._shown(cells), self._name(cells))
        return self._checked(self._build(values, line))

    def _build(self, values: list[object], line: int | None) -> S:
        # Specs take values as given (wrong types too): the check that follows says what is
        # wrong, as a result, instead of a TypeError in the middle of a batch.
        build: Callable[..., S] = self.spec
        return build(*values, line=line)

    def _checked(self, spec: S) -> S | BadRow:
        try:
            self._rules(spec)
        except ValidationError as error:
            key = getattr(spec, self.key_field)
            name = getattr(spec, "name", None)
            return BadRow(
                error,
                spec.line,
                key if isinstance(key, str) else "",
                name if isinstance(name, str) else "",
            )
        return spec

    def _unknown(self, row: Mapping[Any, object], line: int | None = None) -> BadRow | None:
        for key in row:
            if key not in self.columns:
                expected = ", ".join(self.columns)
                return BadRow(
                    ValidationError(str(key)[:40], f"unknown field (expected {expected})"),
                    line,
                    self._shown(row),
                    self._name(row),
                )
        return None

    def _shown(self, row: Mapping[Any, object]) -> str:
        key = row.get(self.key_field)
        return key if isinstance(key, str) else str(key) if isinstance(key, int) else ""

    @staticmethod
    def _name(row: Mapping[Any, object]) -> str:
        name = row.get("name")
        return name if isinstance(name, str) else ""


def _check_company(spec: CompanySpec) -> None:
    if spec.id is None:
        raise ValidationError("id", "is required")
    _validate.company_id(spec.id, "id")
    _validate.name(spec.name, "name")
    if spec.page_enabled is not None and not isinstance(spec.page_enabled, bool):
        raise ValidationError("page_enabled", f"must be true or false, not {spec.page_enabled!r}")


def _check_workspace(spec: WorkspaceSpec) -> None:
    _validate.name(spec.name, "name", required=True)
    if spec.ext_id is None:
        raise ValidationError("ext_id", "is required: it is how an existing workspace is found")
    _validate.optional_text(spec.ext_id, "ext_id")
    if not spec.ext_id.strip():
        raise ValidationError("ext_id", "must not be empty")


COMPANIES: RowSchema[CompanySpec] = RowSchema(
    kind="companies",
    spec=CompanySpec,
    fields=(
        _Field("id", _cell_text),
        _Field("name", _cell_optional),
        _Field("page_enabled", parse_flag, parse_flag),
    ),
    required=("id",),
    key_field="id",
    # A flag left off means "not managed", like an empty cell. A missing name is more
    # likely a broken line than a choice, so it is reported.
    may_omit=("page_enabled",),
    managed=("name", "page_enabled"),
    rules=_check_company,
    identity=str.lower,
)

WORKSPACES: RowSchema[WorkspaceSpec] = RowSchema(
    kind="workspaces",
    spec=WorkspaceSpec,
    fields=(_Field("name", _cell_text), _Field("ext_id", _cell_text)),
    required=("name", "ext_id"),
    key_field="ext_id",
    may_omit=(),
    managed=("name",),
    rules=_check_workspace,
    identity=str,
)

SCHEMAS: dict[Kind, RowSchema[CompanySpec] | RowSchema[WorkspaceSpec]] = {
    "companies": COMPANIES,
    "workspaces": WORKSPACES,
}
