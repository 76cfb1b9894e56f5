"""Property tests: what the server sends, and what callers pass, whatever it is.

- Any valid company, workspace or dashboard JSON structures into the models
  and unstructures back to the same JSON, field for field.
- Any malformed one (a field missing, of the wrong type, null where not
  allowed, huge, or a body that is not JSON at all) is a `ResponseFormatError`
  naming the endpoint, never a `KeyError`, `TypeError` or a cattrs exception,
  and its message never echoes a value from the body (it could be a token).
- Any non-2xx answer, whatever its body, is an `APIStatusError` of its status.
- Company ids and names at and around the limits are refused before anything
  is sent.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest
from core_support import LINK, V2, Recorder, VirtualTime, make_conduit
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conduit_async import (
    APIStatusError,
    Company,
    Conduit,
    ConduitError,
    Dashboard,
    ResponseFormatError,
    ValidationError,
    Workspace,
)
from conduit_async.errors import _BY_STATUS, ServerError
from conduit_async.models import Integration, converter, parse, parse_list
from conduit_async.testing import FakeConduit

FAST = settings(max_examples=60, deadline=None)
ASYNC = settings(max_examples=40, deadline=None)

#: Planted in every string a malformed body carries: no error message may repeat it.
MARKER = "SECRETmarker7f3a"

ENDPOINT = "GET /test/"

# -- valid JSON ---------------------------------------------------------------------------

text = st.text(max_size=40)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
utc_instants = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(timezone.utc),
)
iso_strings = utc_instants.map(lambda d: d.isoformat().replace("+00:00", "Z"))
# Whole seconds, or milliseconds: what a server writes. (A float with more digits than a
# datetime's microseconds cannot come back bit for bit, on any model.)
unix_stamps = st.integers(-(2**31), 253_402_300_000) | st.integers(0, 2**41).map(
    lambda ms: ms / 1000
)
company_ids = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=1)


def with_extras(required: dict[str, Any], optional: dict[str, Any] | None = None) -> Any:
    """A JSON object with the model's fields and, sometimes, fields no model knows."""
    return st.fixed_dictionaries(
        required, optional={**(optional or {}), "zz_unknown": json_values, "plan": json_values}
    )


#: A token as issued: printable ASCII, what an HTTP header can carry (anything else is a
#: format error: see test_a_token_that_cannot_go_into_a_header_is_a_format_error).
tokens = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)

companies = with_extras(
    {
        "id": company_ids,
        "name": st.none() | text,
        "created_at": iso_strings,
        "link_page": with_extras({"url": st.none() | text, "enabled": st.booleans()}),
        "api_token": with_extras({"token": tokens, "expires_at": unix_stamps}),
    },
    {"connections": json_values},
)
workspaces = with_extras(
    {"id": st.integers(), "name": text, "token": tokens}, {"ext_id": st.none() | text}
)
dashboards = with_extras({"id": st.integers(), "name": text})
#: The demos show these ids both as strings and as numbers.
idents = text | st.integers()
accounts = with_extras({"id": idents}, {"name": st.none() | text, "native_id": st.none() | text})
credentials = with_extras(
    {"id": idents},
    {
        "name": st.none() | text,
        "created_at": st.none() | iso_strings,
        "accounts": st.lists(accounts, max_size=3),
    },
)
integrations = with_extras(
    {"id": idents, "name": text}, {"credentials": st.lists(credentials, max_size=3)}
)

#: The fields each model knows, by path, with what the JSON must hold there.
SCHEMAS: dict[type, dict[tuple[str, ...], tuple[str, bool]]] = {
    # path: (kind, required key)
    Company: {
        ("id",): ("str", True),
        ("name",): ("str?", True),
        ("created_at",): ("iso", True),
        ("link_page",): ("object", True),
        ("link_page", "url"): ("str?", True),
        ("link_page", "enabled"): ("bool", True),
        ("api_token",): ("object", True),
        ("api_token", "token"): ("str", True),
        ("api_token", "expires_at"): ("unix", True),
    },
    Workspace: {
        ("id",): ("int", True),
        ("name",): ("str", True),
        ("token",): ("str", True),
        ("ext_id",): ("str?", False),
    },
    Dashboard: {("id",): ("int", True), ("name",): ("str", True)},
}
VALID = {Company: companies, Workspace: workspaces, Dashboard: dashboards}


def known(data: Any, model: type) -> Any:
    """`data` cut down to the fields `model` knows."""
    schema = SCHEMAS[model]

    def cut(node: Any, prefix: tuple[str, ...]) -> Any:
        out = {}
        for key, value in node.items():
            path = (*prefix, key)
            if path not in schema:
                continue
            out[key] = cut(value, path) if schema[path][0] == "object" else value
        return out

    return cut(data, ())


@pytest.mark.parametrize("model", [Company, Workspace, Dashboard], ids=lambda m: m.__name__)
@FAST
@given(data=st.data())
def test_valid_json_structures_and_unstructures_to_the_same_fields(
    model: type, data: st.DataObject
) -> None:
    payload = data.draw(VALID[model])
    obj = parse(copy.deepcopy(payload), model, ENDPOINT)
    assert isinstance(obj, model)
    back = converter.unstructure(obj)
    expected = known(payload, model)
    # Optional fields the JSON left out come back as the model's defaults.
    assert {k: v for k, v in back.items() if k in expected} == expected
    assert set(back) - set(expected) <= {"ext_id"}
    if model is Workspace:
        assert back["ext_id"] == payload.get("ext_id")


@pytest.mark.parametrize("model", [Company, Workspace, Dashboard], ids=lambda m: m.__name__)
@FAST
@given(data=st.data())
def test_valid_json_lists_structure_element_by_element(model: type, data: st.DataObject) -> None:
    payload = data.draw(st.lists(VALID[model], max_size=4))
    objs = parse_list(copy.deepcopy(payload), model, ENDPOINT)
    assert objs == [parse(p, model, ENDPOINT) for p in payload]


# -- malformed JSON -----------------------------------------------------------------------

_marked = st.sampled_from([MARKER, [MARKER], {"token": MARKER}, {MARKER: MARKER}])
_numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "str": st.none() | st.booleans() | _numbers | st.sampled_from([[MARKER], {"a": MARKER}]),
    "str?": st.booleans() | _numbers | st.sampled_from([[MARKER], {"a": MARKER}, []]),
    "int": st.none()
    | st.booleans()
    | st.floats()
    | _marked
    | st.sampled_from(["12", "1e3", [], {}]),
    "bool": st.none() | st.sampled_from([0, 1, "true", "false", MARKER, [], {}]),
    "iso": st.none()
    | st.booleans()
    | _numbers
    | _marked
    | st.sampled_from(
        [
            "",
            "2023-13-45T00:00:00Z",
            "15/03/2023 12:34",
            MARKER + "2023-03-15T12:34:56Z",
            "9" * 200_000,  # huge
            "2023-03-15T12:34:56+99:00",
        ]
    ),
    "unix": st.none()
    | st.booleans()
    | _marked
    | st.sampled_from(
        ["1678898400", 10**30, -(10**30), float("nan"), float("inf"), -float("inf"), [], {}]
    ),
    "object": st.none() | st.booleans() | _numbers | _marked | st.just([]),
}


@st.composite
def malformed(draw: st.DrawFn, model: type) -> Any:
    """A valid document of `model` with one of its known fields broken."""
    payload = draw(VALID[model])
    schema = SCHEMAS[model]
    path = draw(st.sampled_from(sorted(schema)))
    kind, required = schema[path]
    node = payload
    for key in path[:-1]:
        node = node[key]
    actions = ["wrong"] + (["missing"] if required else [])
    if draw(st.sampled_from(actions)) == "missing":
        del node[path[-1]]
    else:
        node[path[-1]] = draw(WRONG[kind])
    return payload


def assert_clean_format_error(exc: BaseException, endpoint: str = ENDPOINT) -> None:
    assert type(exc) is ResponseFormatError, repr(exc)
    message = str(exc)
    assert message.startswith(endpoint + ":")
    assert MARKER not in message
    assert len(message) < 2000
    # No cattrs exception chained on: a traceback would print the values it holds.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


@pytest.mark.parametrize("model", [Company, Workspace, Dashboard], ids=lambda m: m.__name__)
@FAST
@given(data=st.data())
def test_malformed_json_is_a_format_error_that_echoes_nothing(
    model: type, data: st.DataObject
) -> None:
    payload = data.draw(malformed(model))
    with pytest.raises(ConduitError) as caught:
        parse(payload, model, ENDPOINT)
    assert_clean_format_error(caught.value)
    # One bad element spoils a list, wherever it sits.
    good = data.draw(st.lists(VALID[model], max_size=3))
    at = data.draw(st.integers(0, len(good)))
    with pytest.raises(ConduitError) as caught:
        parse_list([*good[:at], payload, *good[at:]], model, ENDPOINT)
    assert_clean_format_error(caught.value)


@pytest.mark.parametrize("model", [Company, Workspace, Dashboard], ids=lambda m: m.__name__)
@FAST
@given(value=json_values)
def test_a_document_of_the_wrong_json_kind_is_a_format_error(model: type, value: Any) -> None:
    if not isinstance(value, dict):
        with pytest.raises(ConduitError) as caught:
            parse(value, model, ENDPOINT)
        assert_clean_format_error(caught.value)
    if not isinstance(value, list) or value:
        # A non-empty list of arbitrary values is a list of non-models (or malformed ones).
        with pytest.raises(ConduitError) as caught:
            parse_list(value, model, ENDPOINT)
        assert_clean_format_error(caught.value)


# -- the same through the session: bodies and statuses ------------------------------------


@contextlib.asynccontextmanager
async def mocked() -> AsyncIterator[tuple[Conduit, Recorder]]:
    """A client against aioresponses, fresh for each example (mocks must not carry over)."""
    with Recorder() as http:
        async with make_conduit(VirtualTime()) as conduit:
            yield conduit, http


def _truncations(doc: Any) -> st.SearchStrategy[bytes]:
    raw = json.dumps(doc).encode()
    return st.integers(1, len(raw) - 1).map(lambda n: raw[:n])


VALID_COMPANY = {
    "id": "acme1",
    "name": "Acme",
    "created_at": "2023-03-15T12:34:56Z",
    "link_page": {"url": None, "enabled": False},
    "api_token": {"token": MARKER, "expires_at": 1_700_000_600},
}

bodies = st.one_of(
    st.binary(max_size=300),
    _truncations(VALID_COMPANY),
    malformed(Company).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"",
            b"   \n",
            b"null",
            b"<!doctype html><title>502 Bad Gateway</title>" + MARKER.encode(),
            b"\xff\xfe\x00garbage",
            # Deeper than the JSON decoder recurses. (Under 128 kB: aioresponses cannot
            # mock a body above aiohttp's read buffer; test_hostile_server sends bigger.)
            b"[" * 100_000,
            b'{"a":' * 20_000,
            b"1" * 5000,  # more digits than int() accepts
            json.dumps(VALID_COMPANY).encode()[:-1],
        ]
    ),
)


@ASYNC
@given(body=bodies)
@example(body=b"[" * 100_000)
async def test_any_2xx_body_is_a_company_or_a_format_error(body: bytes) -> None:
    async with mocked() as (conduit, http):
        http.get(LINK + "company/acme1/", status=200, body=body)
        try:
            company = await conduit.companies.get("acme1")
        except ConduitError as exc:
            assert_clean_format_error(exc, "GET /link/company/{cid}/")
            return
    assert isinstance(company, Company)


statuses = st.sampled_from([300, 304, 400, 401, 403, 404, 405, 409, 410, 418, 422, 429]) | (
    st.integers(500, 599)
)


@ASYNC
@given(status=statuses, body=bodies)
@example(status=500, body=b"[" * 100_000)
async def test_any_non_2xx_answer_is_an_api_status_error_of_its_status(
    status: int, body: bytes
) -> None:
    async with mocked() as (conduit, http):
        http.get(V2 + "dashboards/", status=status, body=body, repeat=True)
        with pytest.raises(ConduitError) as caught:
            await conduit.dashboards.list()
    exc = caught.value
    assert isinstance(exc, APIStatusError), repr(exc)
    assert exc.status == status
    expected = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIStatusError)
    assert type(exc) is expected
    assert str(exc).startswith(f"GET /v2/dashboards/ -> {status}")
    assert len(str(exc)) < 2000


# -- arguments at and around the limits ---------------------------------------------------

BAD_IDS = [
    "",
    "a" * 1025,
    "é",
    "acme1é",
    "１２３",  # full-width digits: alphanumeric, not ASCII
    "ß",
    " acme1",
    "acme1 ",
    "ac me1",
    "acme1\n",
    "\t",
    "../",
    "..",
    "acme1/../x",
    "acme1?x=1",
    "acme1#frag",
    "acme%2F1",
    "acme/1",
    "acme&1",
    "a-b",
    "a_b",
    "a.b",
    "\x00",
]
GOOD_IDS = ["a", "Z", "0", "a" * 1024, "AcMe01", "9" * 1024]


@pytest.fixture
async def fake_and_client() -> AsyncIterator[tuple[FakeConduit, Conduit]]:
    async with (
        FakeConduit() as fake,
        Conduit(
            fake.org_token,
            fake.link_token,
            base_url=fake.base_url,
            link_base_url=fake.link_base_url,
        ) as conduit,
    ):
        yield fake, conduit


def id_calls(conduit: Conduit, cid: Any) -> list[Any]:
    """Every public call that takes a company id, as zero-argument callables."""
    return [
        lambda: conduit.companies.create(cid),
        lambda: conduit.companies.create(cid, name="x"),
        lambda: conduit.companies.get(cid),
        lambda: conduit.companies.update(cid, name="x"),
        lambda: conduit.companies.token(cid),
        lambda: conduit.company(cid).integrations(),
        lambda: conduit.company(cid).connect_url(1),
    ]


@pytest.mark.parametrize("cid", [*BAD_IDS, None, 12, b"acme1"], ids=repr)
async def test_bad_company_ids_are_refused_and_never_sent(
    fake_and_client: tuple[FakeConduit, Conduit], cid: Any
) -> None:
    fake, conduit = fake_and_client
    for call in id_calls(conduit, cid):
        with pytest.raises(ValidationError) as caught:
            await call()
        assert caught.value.argument == "company_id"
    assert fake.stats.requests_total == 0


@FAST
@given(cid=st.text(max_size=1100))
@example(cid="a" * 1025)
async def test_any_id_outside_the_rule_is_refused(cid: str) -> None:
    # 1 to 1024 characters, only A-Z, a-z and 0-9: anything else is refused, with no I/O
    # (no server here: a request would fail with a different error).
    conduit = Conduit("org", "link", base_url="https://api.invalid/v2/")
    valid = 1 <= len(cid) <= 1024 and cid.isascii() and cid.isalnum()
    try:
        conduit.company(cid)
    except ValidationError:
        assert not valid
    else:
        assert valid
    await conduit.close()


@pytest.mark.parametrize("cid", GOOD_IDS, ids=lambda c: f"{c[:4]}..{len(c)}")
async def test_ids_at_the_limits_are_accepted(
    fake_and_client: tuple[FakeConduit, Conduit], cid: str
) -> None:
    fake, conduit = fake_and_client
    company = await conduit.companies.create(cid)
    assert company.id == cid
    assert (await conduit.companies.get(cid.swapcase())).id == cid
    assert fake.stats.companies_created == {cid.lower(): 1}


ODD_NAMES = [
    "",
    "x" * 1024,
    "é" * 1024,
    "../../etc/passwd",
    "a?b#c%d/e&f=g",
    "%2e%2e%2f",
    "  spaced  \t\n",
    "emoji 🚀 and 中文",
    '"quoted" \\ back',
    "\x00nul",
]


@pytest.mark.parametrize("name", ODD_NAMES, ids=lambda n: repr(n[:12]) + f"..{len(n)}")
async def test_names_within_the_limit_arrive_exactly_as_given(
    fake_and_client: tuple[FakeConduit, Conduit], name: str
) -> None:
    fake, conduit = fake_and_client
    assert (await conduit.companies.create("acme1", name=name)).name == name
    assert fake.companies["acme1"].name == name
    assert (await conduit.companies.update("acme1", name=name[::-1])).name == name[::-1]
    ws = await conduit.workspaces.create(name or "w", ext_id=name)
    assert (ws.name, ws.ext_id) == (name or "w", name)


@pytest.mark.parametrize("name", ["x" * 1025, "é" * 1025, 12, b"name", ["n"]], ids=repr)
async def test_names_over_the_limit_or_not_text_are_refused_and_never_sent(
    fake_and_client: tuple[FakeConduit, Conduit], name: Any
) -> None:
    fake, conduit = fake_and_client
    calls = [
        lambda: conduit.companies.create("acme1", name=name),
        lambda: conduit.companies.update("acme1", name=name),
        lambda: conduit.workspaces.create(name),
        lambda: conduit.workspaces.create("w", ext_id=name),
        lambda: conduit.dashboards.clone(1, workspace=1, name=name),
    ]
    for call in calls:
        with pytest.raises(ValidationError):
            await call()
    assert fake.stats.requests_total == 0


@pytest.mark.parametrize("name", ["", "   ", "\n\t"], ids=repr)
async def test_a_workspace_needs_a_non_blank_name(
    fake_and_client: tuple[FakeConduit, Conduit], name: str
) -> None:
    fake, conduit = fake_and_client
    with pytest.raises(ValidationError) as caught:
        await conduit.workspaces.create(name)
    assert caught.value.argument == "name"
    assert fake.stats.requests_total == 0


@pytest.mark.parametrize(
    "segment",
    [
        *(".", "..", "../x", "a/b", "", "a?b", "a#b", "a%2Fb", " 1", "1 ", "é", True, 1.5),
        # Too many digits for a segment, and for Python to print (str() raises ValueError).
        pytest.param(10**1024, id="1025 digits"),
        pytest.param(-(10**1023), id="1024 digits and a sign"),
        pytest.param(10**5000, id="5001 digits"),
    ],
)
async def test_path_segments_that_would_change_the_url_are_refused(
    fake_and_client: tuple[FakeConduit, Conduit], segment: Any
) -> None:
    fake, conduit = fake_and_client
    view = conduit.company("acme1")
    for call in (
        lambda: view.connect_url(segment),
        lambda: view.delete_credential(segment),
        lambda: view.data_lake(integration=segment, date_from="2024-01-01", date_to="2024-01-02"),
    ):
        with pytest.raises(ValidationError):
            await call()
    assert fake.stats.requests_total == 0


@pytest.mark.parametrize("bad", [0, -1, True, "1", 1.0, None])
async def test_numeric_ids_must_be_positive_integers(
    fake_and_client: tuple[FakeConduit, Conduit], bad: Any
) -> None:
    fake, conduit = fake_and_client
    for call in (
        lambda: conduit.dashboards.share_url(bad),
        lambda: conduit.dashboards.clone(bad, workspace=1),
        lambda: conduit.dashboards.clone(1, workspace=bad),
        lambda: conduit.workspaces.disable(bad),
    ):
        with pytest.raises(ValidationError):
            await call()
    with pytest.raises(ValidationError):
        conduit.workspace(bad)
    assert fake.stats.requests_total == 0


@given(
    bad=st.text(min_size=1).filter(lambda t: not (t.isascii() and t.isprintable())) | st.just("")
)
def test_a_token_that_cannot_go_into_a_header_is_a_format_error(bad: str) -> None:
    # CR/LF would split the Authorization header (aiohttp refuses with a bare ValueError).
    body = {"id": 1, "name": "W", "token": bad}
    with pytest.raises(ResponseFormatError) as info:
        parse(body, Workspace, "GET /v2/workspaces/")
    assert bad not in str(info.value) or not bad.strip()
    assert "$.token" in str(info.value)


def _mangled(raw: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """`raw` with one field, at any depth, replaced by any JSON value or removed: most
    results are invalid, some are still valid."""
    out = copy.deepcopy(raw)
    node = out
    while True:
        key = data.draw(st.sampled_from(sorted(node)))
        if isinstance(node[key], dict) and node[key] and data.draw(st.booleans()):
            node = node[key]
            continue
        if data.draw(st.booleans()):
            del node[key]
        else:
            node[key] = data.draw(json_values)
        return out


@pytest.mark.parametrize(
    "model", [Company, Workspace, Dashboard, Integration], ids=lambda m: m.__name__
)
@FAST
@given(data=st.data())
def test_the_hand_written_happy_path_agrees_with_cattrs(model: type, data: st.DataObject) -> None:
    # The fast path may refuse more than cattrs (cattrs then decides), never accept more,
    # and what it accepts it must build exactly as cattrs does (the same values, of the
    # same types: it builds its objects without their `__init__`).
    from conduit_async.models import _FAST

    raw = data.draw({**VALID, Integration: integrations}[model])
    if data.draw(st.booleans()):
        raw = _mangled(raw, data)
    try:
        fast = _FAST[model](copy.deepcopy(raw))
    except Exception:
        return
    slow = converter.structure(raw, model)
    assert fast == slow
    assert repr(fast) == repr(slow)
