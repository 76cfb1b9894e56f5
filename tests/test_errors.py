"""Error mapping: every status to its class, any body shape, and no token in any message."""

from __future__ import annotations

import json
from typing import Any

import pytest
from core_support import (
    LINK,
    LINK_TOKEN,
    ORG_TOKEN,
    V2,
    Recorder,
    VirtualTime,
    company_json,
    make_conduit,
)

from conduit_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    Conduit,
    ConduitError,
    ConduitTimeoutError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    ResponseFormatError,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationError,
)
from conduit_async.errors import BODY_EXCERPT, error_for_status

COMPANY_TOKEN = "company-SECRET-1"


@pytest.fixture
async def conduit(vt: VirtualTime, http: Recorder) -> Any:
    # One attempt: these tests are about the error a status maps to, not about retries.
    async with make_conduit(vt, retry=RetryPolicy(attempts=1, sleep=vt.sleep)) as c:
        yield c


STATUSES = [
    (400, BadRequestError),
    (422, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (429, RateLimitError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
    (405, APIStatusError),
    (408, APIStatusError),
    (418, APIStatusError),
    (451, APIStatusError),
]


@pytest.mark.parametrize(("status", "cls"), STATUSES)
async def test_status_maps_to_its_class(
    conduit: Conduit, http: Recorder, status: int, cls: type[APIStatusError]
) -> None:
    http.get(
        V2 + "workspaces/",
        status=status,
        payload={"code": "some_code", "message": "Something is wrong"},
    )
    with pytest.raises(APIStatusError) as info:
        await conduit.workspaces.list()
    exc = info.value
    assert type(exc) is cls
    assert isinstance(exc, ConduitError)
    assert exc.status == status
    assert exc.method == "GET"
    assert exc.path == "/v2/workspaces/"
    assert exc.code == "some_code"
    assert exc.message == "Something is wrong"
    assert str(exc).startswith(f"GET /v2/workspaces/ -> {status} [some_code]: Something is wrong")
    assert ORG_TOKEN not in str(exc)


@pytest.mark.parametrize(("status", "cls"), STATUSES)
async def test_status_maps_to_its_class_on_a_link_post(
    conduit: Conduit, http: Recorder, status: int, cls: type[APIStatusError]
) -> None:
    http.post(LINK + "company/acme1/", status=status, body="")
    with pytest.raises(APIStatusError) as info:
        await conduit.companies.update("acme1", name="Acme")
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.method, exc.path) == (status, "POST", "/link/company/acme1/")
    assert exc.code is None and exc.message is None and exc.body == ""
    assert str(exc).startswith(f"POST /link/company/acme1/ -> {status}")


@pytest.mark.parametrize("status", [501, 505, 599])
async def test_other_5xx_are_server_errors(conduit: Conduit, http: Recorder, status: int) -> None:
    http.get(V2 + "dashboards/", status=status, body="")
    with pytest.raises(ServerError) as info:
        await conduit.dashboards.list()
    assert info.value.status == status


@pytest.mark.parametrize(
    ("body", "content_type", "in_str"),
    [
        ('{"detail": "Not found."}', "application/json", "Not found."),
        ('["a", "b"]', "application/json", '["a", "b"]'),
        ('"just a string"', "application/json", "just a string"),
        ("<html><body><h1>404 Not Found</h1></body></html>", "text/html", "404 Not Found"),
        ('{"code": "bad", "message": ', "application/json", '{"code": "bad", "message":'),
        ("plain text\nover two lines", "text/plain", "plain text over two lines"),
    ],
    ids=["other-json-object", "json-array", "json-string", "html", "invalid-json", "text"],
)
async def test_odd_error_bodies_still_map_by_status(
    conduit: Conduit, http: Recorder, body: str, content_type: str, in_str: str
) -> None:
    http.get(V2 + "dashboards/9/share/", status=404, body=body, content_type=content_type)
    with pytest.raises(NotFoundError) as info:
        await conduit.dashboards.share_url(9)
    exc = info.value
    assert exc.status == 404
    assert exc.code is None
    assert exc.message is None
    assert exc.body == body
    assert exc.path == "/v2/dashboards/9/share/"
    assert in_str in str(exc)


async def test_empty_error_body(conduit: Conduit, http: Recorder) -> None:
    http.delete(V2 + "workspaces/5/", status=404, body="")
    with pytest.raises(NotFoundError) as info:
        await conduit.workspaces.disable(5)
    exc = info.value
    assert (exc.status, exc.method, exc.path, exc.body) == (404, "DELETE", "/v2/workspaces/5/", "")
    assert str(exc) == "DELETE /v2/workspaces/5/ -> 404"


async def test_non_utf8_error_body(conduit: Conduit, http: Recorder) -> None:
    http.get(V2 + "dashboards/", status=400, body=b"\xff\xfebad", content_type="text/plain")
    with pytest.raises(BadRequestError) as info:
        await conduit.dashboards.list()
    assert info.value.body.endswith("bad")


async def test_code_and_message_of_other_types_are_kept_as_text(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(V2 + "dashboards/", status=400, payload={"code": 1001, "message": ["a", "b"]})
    with pytest.raises(BadRequestError) as info:
        await conduit.dashboards.list()
    assert info.value.code == "1001"
    assert info.value.message == "['a', 'b']"


async def test_long_bodies_are_truncated(conduit: Conduit, http: Recorder) -> None:
    body = json.dumps({"code": "c" * 500, "message": "m" * 5000, "padding": "p" * 20_000})
    http.get(V2 + "dashboards/", status=400, body=body)
    with pytest.raises(BadRequestError) as info:
        await conduit.dashboards.list()
    exc = info.value
    assert len(exc.body) == BODY_EXCERPT
    assert body.startswith(exc.body)
    assert exc.code is not None and len(exc.code) <= 200
    assert exc.message is not None and len(exc.message) <= 1000
    assert len(str(exc)) < 1500


async def test_long_html_body_is_one_bounded_line_in_the_message(
    conduit: Conduit, http: Recorder
) -> None:
    body = "<html>\n" + "<p>oops</p>\n" * 1000 + "</html>"
    http.get(V2 + "dashboards/", status=502, body=body, content_type="text/html")
    with pytest.raises(ServerError) as info:
        await conduit.dashboards.list()
    text = str(info.value)
    assert "\n" not in text
    assert len(text) < 300
    assert text.endswith("…")


# -- tokens never reach an error ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        f'{{"code": "invalid_token", "message": "Token {ORG_TOKEN} is not valid"}}',
        f"<html>Bearer {ORG_TOKEN} refused</html>",
        f'{{"error": "bad", "echo": {{"token": "{ORG_TOKEN}"}}}}',
        f"{ORG_TOKEN}",
    ],
    ids=["in-message", "in-html", "in-json-field", "whole-body"],
)
async def test_the_request_token_is_redacted_from_errors(
    conduit: Conduit, http: Recorder, body: str
) -> None:
    http.get(V2 + "workspaces/", status=401, body=body)
    with pytest.raises(AuthenticationError) as info:
        await conduit.workspaces.list()
    exc = info.value
    for text in (str(exc), repr(exc), exc.body, exc.message or "", exc.code or ""):
        assert ORG_TOKEN not in text
    assert "<redacted>" in exc.body


async def test_token_fields_of_other_tokens_are_redacted(conduit: Conduit, http: Recorder) -> None:
    # A 409 that echoes the existing company, token included.
    http.post(LINK + "company/", status=409, payload=company_json(token="other-company-SECRET"))
    with pytest.raises(ConflictError) as info:
        await conduit.companies.create("acme1")
    exc = info.value
    assert "other-company-SECRET" not in exc.body
    assert "other-company-SECRET" not in str(exc)
    assert '"id": "acme1"' in exc.body


async def test_a_token_straddling_the_excerpt_is_still_redacted(
    conduit: Conduit, http: Recorder
) -> None:
    # Multi-byte text before the token: any cut made in bytes, before redaction, would
    # leave the token's head inside the character excerpt.
    prefix = "€" * 1360  # 4080 bytes, 1360 characters
    http.get(V2 + "workspaces/", status=400, body=prefix + ORG_TOKEN, content_type="text/plain")
    with pytest.raises(BadRequestError) as info:
        await conduit.workspaces.list()
    exc = info.value
    assert ORG_TOKEN[:12] not in exc.body
    assert exc.body.endswith("<redacted>")


async def test_company_token_is_redacted_from_company_call_errors(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(LINK + "company/acme1/", payload=company_json())
    http.get(
        LINK + "credentials/connect/7/",
        status=400,
        payload={"code": "bad", "message": f"token {COMPANY_TOKEN} cannot connect 7"},
    )
    with pytest.raises(BadRequestError) as info:
        await conduit.company("acme1").connect_url(7)
    exc = info.value
    assert COMPANY_TOKEN not in str(exc)
    assert exc.message == "token <redacted> cannot connect 7"
    assert LINK_TOKEN not in str(exc)


# -- 403 hints and 429 retry_after ----------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "hint"),
    [
        ({"code": "forbidden", "message": "Organization name is not set"}, "organization name"),
        ({"code": "forbidden", "message": "White-label is not configured"}, "White-label"),
        ({"code": "whitelabel_required"}, "White-label"),
    ],
)
async def test_permission_denied_hints_at_the_precondition(
    conduit: Conduit, http: Recorder, payload: dict[str, str], hint: str
) -> None:
    http.post(V2 + "dashboards/1/clone/", status=403, payload=payload)
    with pytest.raises(PermissionDeniedError) as info:
        await conduit.dashboards.clone(1, workspace=2)
    assert info.value.hint is not None
    assert hint in info.value.hint
    assert hint in str(info.value)


async def test_bare_403_hints_at_both_preconditions_and_scope(
    conduit: Conduit, http: Recorder
) -> None:
    http.get(
        V2 + "workspaces/", status=403, body="<html>Forbidden</html>", content_type="text/html"
    )
    with pytest.raises(PermissionDeniedError) as info:
        await conduit.workspaces.list()
    text = str(info.value)
    assert "organization name" in text
    assert "White-label" in text
    assert "scope" in text


@pytest.mark.parametrize(
    ("header", "expected"),
    [({"Retry-After": "7"}, 7.0), ({"Retry-After": "soon"}, None), ({}, None)],
)
async def test_rate_limit_error_carries_retry_after(
    conduit: Conduit, http: Recorder, header: dict[str, str], expected: float | None
) -> None:
    http.get(V2 + "workspaces/", status=429, headers=header, payload={"code": "throttled"})
    with pytest.raises(RateLimitError) as info:
        await conduit.workspaces.list()
    assert info.value.retry_after == expected
    assert info.value.code == "throttled"
    assert info.value.status == 429


async def test_rate_limit_error_reads_an_http_date(
    vt: VirtualTime, conduit: Conduit, http: Recorder
) -> None:
    http.get(V2 + "workspaces/", status=429, headers={"Retry-After": vt.http_date(42)})
    with pytest.raises(RateLimitError) as info:
        await conduit.workspaces.list()
    assert info.value.retry_after == 42.0


# -- the hierarchy and the pure mapping -------------------------------------------------


def test_hierarchy() -> None:
    assert issubclass(ValidationError, ValueError)
    assert issubclass(ValidationError, ConduitError)
    assert issubclass(ClientClosedError, RuntimeError)
    assert issubclass(ConduitTimeoutError, TransportError)
    assert issubclass(ConduitTimeoutError, TimeoutError)
    for cls in (
        BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError,
        ConflictError, RateLimitError, ServerError,
    ):  # fmt: skip
        assert issubclass(cls, APIStatusError)
    for cls in (
        ConfigurationError, ClientClosedError, ValidationError, ResponseFormatError,
        TransportError, OutcomeUnknownError, APIStatusError,
    ):  # fmt: skip
        assert issubclass(cls, ConduitError)


@pytest.mark.parametrize(("status", "cls"), [*STATUSES, (302, APIStatusError), (600, ServerError)])
def test_error_for_status_is_a_pure_function_of_the_status(
    status: int, cls: type[APIStatusError]
) -> None:
    exc = error_for_status(
        status=status, method="GET", path="/v2/x/", code=None, message=None, body="<html/>"
    )
    assert type(exc) is cls
    assert exc.status == status


def test_validation_error_names_the_argument() -> None:
    exc = ValidationError("company_id", "must not be empty")
    assert exc.argument == "company_id"
    assert exc.reason == "must not be empty"
    assert str(exc) == "company_id: must not be empty"


def test_outcome_unknown_keeps_its_cause() -> None:
    cause = ServerError(status=502, method="POST", path="/v2/workspaces/")
    exc = OutcomeUnknownError("POST /v2/workspaces/", cause)
    assert exc.cause is cause
    assert exc.endpoint == "POST /v2/workspaces/"
    assert "ServerError" in str(exc)
    assert "502" in str(exc)
