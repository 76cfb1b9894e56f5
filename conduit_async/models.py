"""Typed models of what the Conduit APIs return, and the one converter for them.

Every model is a frozen attrs class. Responses are structured by `converter`
alone; `parse` turns any structuring failure into a `ResponseFormatError`
naming the endpoint and the field, so callers never see a bare cattrs,
`KeyError` or `TypeError`. Unknown response fields are ignored: the server may
add fields at any time. Token fields are left out of `repr()` (and so `str()`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any, TypeVar, cast, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import is_sequence, list_structure_factory
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import ResponseFormatError

__all__ = [
    "Account",
    "ApiToken",
    "ClonedDashboard",
    "Company",
    "Credential",
    "Dashboard",
    "DataLakeFile",
    "Integration",
    "LinkPage",
    "Workspace",
    "converter",
    "parse",
    "parse_list",
    "parser",
]

T = TypeVar("T")


@attrs.frozen(weakref_slot=False)
class Workspace:
    """A sub-workspace. `token` authorizes calls on data inside it (its dashboards)."""

    id: int
    name: str
    token: str = attrs.field(repr=False)
    ext_id: str | None = None


@attrs.frozen(weakref_slot=False)
class Dashboard:
    id: int
    name: str


@attrs.frozen(weakref_slot=False)
class ClonedDashboard:
    """A dashboard cloned into a sub-workspace; `url` is where it can be viewed."""

    id: int
    name: str
    url: str


@attrs.frozen(weakref_slot=False)
class LinkPage:
    """The Company Page where a company's user picks data sources; `url` is None when disabled."""

    url: str | None
    enabled: bool


@attrs.frozen(weakref_slot=False)
class ApiToken:
    """A company token as the server issued it. `expires_at` is the server's word,
    in the server's clock: the token broker, not this class, decides when to stop using it."""

    token: str = attrs.field(repr=False)
    expires_at: datetime


@attrs.frozen(weakref_slot=False)
class Company:
    """A company (a sub-client) of a Link APP."""

    id: str
    name: str | None
    created_at: datetime
    link_page: LinkPage
    api_token: ApiToken


@attrs.frozen(weakref_slot=False)
class Account:
    id: str
    name: str | None = None
    native_id: str | None = None


@attrs.frozen(weakref_slot=False)
class Credential:
    """One connected data source of a company (a login at an integration)."""

    id: str
    name: str | None = None
    created_at: datetime | None = None
    accounts: list[Account] = attrs.field(factory=list)


@attrs.frozen(weakref_slot=False)
class Integration:
    """A data source type (Google Ads, ...) and the company's credentials for it."""

    id: str
    name: str
    credentials: list[Credential] = attrs.field(factory=list)


@attrs.frozen(weakref_slot=False)
class DataLakeFile:
    """One day of extracted data; `url` downloads it as CSV."""

    date: date
    url: str | None
    service_status: str | None = None
    data_status: str | None = None
    data_updated_at: datetime | None = None


def _strict(kind: type[Any], *, allow: tuple[type, ...] = ()) -> Any:
    """A structure hook that checks the JSON type instead of coercing.

    cattrs' defaults call `int(value)` and `str(value)`, which would quietly
    accept `"12"` for an id or `12` for a name; a wrong type from the server is
    a format error worth reporting.
    """
    accepted = (kind, *allow)

    def hook(value: Any, _: type) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got bool")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value) if kind is float else value

    return hook


def _parse_iso(value: Any, _: type) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        # The API speaks UTC; a naive timestamp is read as UTC rather than local time.
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _parse_unix(value: Any, _: type) -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a Unix timestamp, got {type(value).__name__}")
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"timestamp out of range: {value!r}") from exc


def _token(value: Any, _: type = str) -> str:
    """A bearer token as issued: text that can go into an HTTP header as it is."""
    if type(value) is not str:
        raise TypeError(f"expected str, got {type(value).__name__}")
    if not value or not value.isprintable() or not value.isascii():
        # CR/LF would split the header; aiohttp would refuse it with a bare ValueError.
        raise ValueError("not a usable token (empty, or control or non-ASCII characters)")
    return value


def _format_iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _format_unix(value: datetime) -> int | float:
    stamp = value.timestamp()
    return int(stamp) if stamp.is_integer() else stamp


def _parse_date(value: Any, _: type) -> date:
    if not isinstance(value, str):
        raise TypeError(f"expected a YYYY-MM-DD string, got {type(value).__name__}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("not a YYYY-MM-DD date") from None


def _ident(value: Any, _: type) -> str:
    # The demos show these ids both as numbers and as strings; keep one type.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"expected a string or integer id, got {type(value).__name__}")
    return str(value)


def _strict_lists(type_: Any, conv: cattrs.Converter) -> Any:
    # cattrs would turn any iterable into a list: "" or {} would read as "nothing".
    structure_items = list_structure_factory(type_, conv)

    def hook(value: Any, target: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"expected a JSON array, got {_json_kind(value)}")
        return structure_items(value, target)

    return hook


def _make_converter(*, detailed_validation: bool = True) -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=detailed_validation)
    conv.register_structure_hook_factory(is_sequence, _strict_lists)
    conv.register_structure_hook(str, _strict(str))
    conv.register_structure_hook(int, _strict(int))
    conv.register_structure_hook(bool, _strict(bool))
    conv.register_structure_hook(float, _strict(float, allow=(int,)))
    conv.register_structure_hook(datetime, _parse_iso)
    conv.register_unstructure_hook(datetime, _format_iso)
    conv.register_structure_hook(date, _parse_date)
    conv.register_unstructure_hook(date, date.isoformat)
    # expires_at is a Unix timestamp on the wire, unlike every other datetime.
    conv.register_structure_hook(
        ApiToken,
        make_dict_structure_fn(
            ApiToken,
            conv,
            token=override(struct_hook=_token),
            expires_at=override(struct_hook=_parse_unix),
        ),
    )
    conv.register_structure_hook(
        Workspace, make_dict_structure_fn(Workspace, conv, token=override(struct_hook=_token))
    )
    conv.register_unstructure_hook(
        ApiToken,
        make_dict_unstructure_fn(ApiToken, conv, expires_at=override(unstruct_hook=_format_unix)),
    )
    for cls in (Account, Credential, Integration):
        conv.register_structure_hook(
            cls, make_dict_structure_fn(cls, conv, id=override(struct_hook=_ident))
        )
    return conv


#: The one converter: structures every response and unstructures models back to JSON shapes.
converter = _make_converter()
# The same rules without detailed validation: about twice as fast on the happy path.
# A failure is structured again by `converter`, only to describe it.
_fast = _make_converter(detailed_validation=False)


# -- the happy path, by hand -------------------------------------------------------------
#
# cattrs builds a structuring function per class that is correct but, per call, costs
# several times what these do (they are the bulk of a request's client-side work). Each
# accepts only exactly what the cattrs rules accept; anything else (a missing field, a
# wrong type, a value out of range) makes it raise, and the converter then structures the
# data again, to refuse it with a precise message or accept what these did not expect.
# tests/test_models.py checks both paths agree on generated data.


@functools.lru_cache(maxsize=4096)
def _iso(value: str) -> datetime:
    # Cached: a batch sees the same second many times over.
    return _parse_iso(value, datetime)


def unchecked(cls: type[T]) -> Callable[..., T]:
    """A positional constructor of the frozen attrs class `cls` for values the parsers
    below have already checked.

    attrs' frozen `__init__` sets each field through `object.__setattr__`, a call per
    field. This builds an instance of a plain twin class with the same slots, whose
    fields Python stores directly (a specialized instruction, no call), then makes it a
    `cls`: a quarter of the cost, and the same object (the fuzz test in
    tests/test_models.py compares them). Only for classes with nothing else to run at
    construction (no validator, converter or post-init), which is checked, and without
    a weak-reference slot (CPython refuses the switch for those).
    """
    fields = attrs.fields(cast("type[attrs.AttrsInstance]", cls))
    if any(f.validator or f.converter or f.on_setattr for f in fields) or hasattr(
        cls, "__attrs_post_init__"
    ):
        raise TypeError(f"{cls.__name__} runs code at construction; use its __init__")
    slots = getattr(cls, "__slots__", ("__weakref__",))
    if "__weakref__" in slots:
        raise TypeError(f"{cls.__name__} needs slots and weakref_slot=False")
    names = [f.name for f in fields]
    twin = type(cls.__name__, (), {"__slots__": slots, "__module__": __name__})
    namespace: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
    switched = "".join(f"    self.{n} = {n}\n" for n in names) + "    self.__class__ = _cls\n"
    exec(_maker(names, "_twin", switched), namespace)
    made: Callable[..., T] = namespace["make"]
    try:
        made(*[None] * len(names))
    except (TypeError, AttributeError):  # a layout that refuses the switch: slot by slot
        namespace.update({f"_set_{n}": getattr(cls, n).__set__ for n in names})
        exec(_maker(names, "_cls", "".join(f"    _set_{n}(self, {n})\n" for n in names)), namespace)
        made = namespace["make"]
    return made


def _maker(names: list[str], new: str, body: str) -> str:
    return f"def make({', '.join(names)}):\n    self = _new({new})\n{body}    return self\n"


_company = unchecked(Company)
_link_page = unchecked(LinkPage)
_api_token = unchecked(ApiToken)
_workspace = unchecked(Workspace)
_dashboard = unchecked(Dashboard)
_integration = unchecked(Integration)
_credential = unchecked(Credential)
_account = unchecked(Account)
_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp

# Each parser checks types inline (a helper call per field costs more than the check),
# and raises a bare TypeError for anything unexpected: `parser` then hands the data to
# cattrs, whose message names the field.


def _fast_company(d: dict[str, Any]) -> Company:
    page = d["link_page"]
    token = d["api_token"]
    cid = d["id"]
    name = d["name"]
    created = d["created_at"]
    url = page["url"]
    enabled = page["enabled"]
    value = token["token"]
    expires = token["expires_at"]
    if (
        type(cid) is not str
        or (name is not None and type(name) is not str)
        or type(created) is not str
        or (url is not None and type(url) is not str)
        or type(enabled) is not bool
        or type(expires) not in (int, float)
        # A token must go into a header as it is (see `_token`).
        or type(value) is not str
        or not value
        or not value.isascii()
        or not value.isprintable()
    ):
        raise TypeError
    return _company(
        cid,
        name,
        _iso(created),
        _link_page(url, enabled),
        _api_token(value, _fromtimestamp(expires, _UTC)),
    )


def _fast_workspace(d: dict[str, Any]) -> Workspace:
    wid = d["id"]
    name = d["name"]
    ext_id = d.get("ext_id")
    if (
        type(wid) is not int
        or type(name) is not str
        or (ext_id is not None and type(ext_id) is not str)
    ):
        raise TypeError
    return _workspace(wid, name, _token(d["token"]), ext_id)


def _fast_dashboard(d: dict[str, Any]) -> Dashboard:
    did = d["id"]
    name = d["name"]
    if type(did) is not int or type(name) is not str:
        raise TypeError
    return _dashboard(did, name)


def _fast_account(d: dict[str, Any]) -> Account:
    aid = d["id"]
    name = d.get("name")
    native = d.get("native_id")
    if (name is not None and type(name) is not str) or (
        native is not None and type(native) is not str
    ):
        raise TypeError
    if type(aid) is not str:
        if type(aid) is not int:
            raise TypeError
        aid = str(aid)
    return _account(aid, name, native)


def _fast_credential(d: dict[str, Any]) -> Credential:
    cid = d["id"]
    name = d.get("name")
    created = d.get("created_at")
    accounts = d.get("accounts", [])
    if (
        (name is not None and type(name) is not str)
        or (created is not None and type(created) is not str)
        or type(accounts) is not list
    ):
        raise TypeError
    if type(cid) is not str:
        if type(cid) is not int:
            raise TypeError
        cid = str(cid)
    return _credential(
        cid,
        name,
        None if created is None else _iso(created),
        [_fast_account(a) for a in accounts] if accounts else [],
    )


def _fast_integration(d: dict[str, Any]) -> Integration:
    iid = d["id"]
    name = d["name"]
    credentials = d.get("credentials", [])
    if type(name) is not str or type(credentials) is not list:
        raise TypeError
    if type(iid) is not str:
        if type(iid) is not int:
            raise TypeError
        iid = str(iid)
    # An empty list skips the comprehension (a call of its own before Python 3.12): most
    # integrations have no credentials.
    return _integration(
        iid, name, [_fast_credential(c) for c in credentials] if credentials else []
    )


_FAST: dict[type, Callable[[dict[str, Any]], Any]] = {
    Company: _fast_company,
    Workspace: _fast_workspace,
    Dashboard: _fast_dashboard,
    Integration: _fast_integration,
}


_PARSERS: dict[Any, Callable[[Any, str], Any]] = {}


def parser(target: type[T]) -> Callable[[Any, str], T]:
    """A function `(data, endpoint) -> target` for a model class or `list[Model]`.

    It raises `ResponseFormatError` exactly as `parse` and `parse_list` do;
    for the hot models it first tries a hand-written happy path.
    """
    made = _PARSERS.get(target)
    if made is None:
        made = _PARSERS[target] = _make_parser(target)
    return made


def _make_parser(target: Any) -> Callable[[Any, str], Any]:
    if get_origin(target) is list:
        (cls,) = get_args(target)
        item = _FAST.get(cls)

        def parse_many(data: Any, endpoint: str) -> Any:
            if item is not None and type(data) is list:
                try:
                    return [item(d) for d in data]
                except Exception:
                    pass
            return parse_list(data, cls, endpoint)

        return parse_many
    fast = _FAST.get(target)

    def parse_one(data: Any, endpoint: str) -> Any:
        if fast is not None and type(data) is dict:
            try:
                return fast(data)
            except Exception:
                pass
        return parse(data, target, endpoint)

    return parse_one


def parse(data: Any, cls: type[T], endpoint: str) -> T:
    """Structure `data` as `cls`, or raise `ResponseFormatError` naming the endpoint and field."""
    if not isinstance(data, dict):
        raise ResponseFormatError(endpoint, f"expected a JSON object, got {_json_kind(data)}")
    structured: T = _structure(data, cls, cls, endpoint)
    return structured


def parse_list(data: Any, cls: type[T], endpoint: str) -> list[T]:
    """Structure a JSON array of `cls`; anything but a list is a format error."""
    if not isinstance(data, list):
        raise ResponseFormatError(endpoint, f"expected a JSON array, got {_json_kind(data)}")
    structured: list[T] = _structure(data, list[cls], cls, endpoint)  # type: ignore[valid-type]
    return structured


def _structure(data: Any, target: Any, cls: type, endpoint: str) -> Any:
    """The fast converter first; on failure the detailed one, only to say what is wrong."""
    try:
        return _fast.structure(data, target)
    except Exception:
        pass
    try:
        return converter.structure(data, target)
    except Exception as exc:  # cattrs raises ExceptionGroups of anything a hook raised
        raise ResponseFormatError(endpoint, describe_structure_error(exc, cls)) from None


def describe_structure_error(exc: BaseException, cls: type) -> str:
    """A short, token-free description of what was wrong with a response, field by field."""
    if isinstance(exc, cattrs.BaseValidationError):
        messages = cattrs.transform_error(exc, path="$", format_exception=_format_cause)
        return f"not a valid {cls.__name__}: " + "; ".join(messages[:5])
    return f"not a valid {cls.__name__}: {_format_cause(exc, None)}"


def _format_cause(exc: BaseException, _type: Any) -> str:
    # Never echo the offending value: it may be a token.
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, (TypeError, ValueError)) and str(exc):
        text = str(exc)
        return text if len(text) <= 120 else "invalid value"
    return f"invalid value ({type(exc).__name__})"


def _json_kind(data: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", type(None): "null"}
    return names.get(type(data), type(data).__name__)
