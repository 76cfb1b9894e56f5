"""`decide`, the pure rule book of the request path, as a table (like gidgethub's sansio tests).

Each row is one attempt's outcome, the request it belonged to and the policy;
the expected answer is the one `Decision` the session must carry out. No I/O:
the session's part (doing what the decision says) is tested in test_retry.py.

The policy's jitter is fixed at 1.0, so a backoff is exactly
`base_delay * 2**(retry - 1)` capped at `max_delay`: 0.5 s, 1 s, 2 s...
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import attrs
import pytest

from conduit_async._retry import (
    Attempt,
    Decision,
    Done,
    Pause,
    Raise,
    Reconcile,
    RefreshToken,
    Retry,
    RetryPolicy,
    decide,
    http_date,
    parse_retry_after,
)

POLICY = RetryPolicy(jitter=lambda: 1.0)  # 3 attempts, 0.5 s base, 8 s cap, 60 s Retry-After cap


class Row(NamedTuple):
    """One line of the table: an attempt, the request, the policy, and what must follow."""

    attempt: Attempt
    method: str
    idempotent: bool
    can_reconcile: bool
    expected: Decision
    policy: RetryPolicy = POLICY


def get(attempt: Attempt, expected: Decision, policy: RetryPolicy = POLICY) -> Row:
    return Row(attempt, "GET", True, False, expected, policy)


def delete(attempt: Attempt, expected: Decision, policy: RetryPolicy = POLICY) -> Row:
    return Row(attempt, "DELETE", True, False, expected, policy)


def create(attempt: Attempt, expected: Decision, policy: RetryPolicy = POLICY) -> Row:
    """A non-idempotent POST that can be reconciled (a company or a workspace with ext_id)."""
    return Row(attempt, "POST", False, True, expected, policy)


def blind_post(attempt: Attempt, expected: Decision, policy: RetryPolicy = POLICY) -> Row:
    """A non-idempotent POST that cannot be looked for (a clone, a workspace without ext_id)."""
    return Row(attempt, "POST", False, False, expected, policy)


def update(attempt: Attempt, expected: Decision, policy: RetryPolicy = POLICY) -> Row:
    """A POST marked idempotent (setting the same values twice is harmless)."""
    return Row(attempt, "POST", True, False, expected, policy)


FIRST = Attempt(1)
RAISE = Raise()
UNKNOWN = Raise(unknown=True)


def at(number: int, status: int | None = None, **fields: Any) -> Attempt:
    return Attempt(number, status, **fields)


TABLE: dict[str, Row] = {
    # -- a 2xx is the answer, whatever came before ------------------------------------
    "200 GET": get(at(1, 200), Done()),
    "201 create": create(at(1, 201), Done()),
    "204 DELETE": delete(at(1, 204), Done()),
    "299 GET": get(at(1, 299), Done()),
    "200 create after an unknown outcome": create(at(2, 200, unknown=True), Done()),
    "200 on the last attempt": get(at(3, 200), Done()),
    # -- 401: one fresh token, then give up ------------------------------------------
    "401 GET first": get(at(1, 401), RefreshToken()),
    "401 create first": create(at(1, 401), RefreshToken()),
    "401 DELETE first": delete(at(1, 401), RefreshToken()),
    "401 after an unknown outcome": create(at(2, 401, unknown=True), RefreshToken()),
    "401 on the last attempt": get(at(3, 401), RefreshToken()),
    "401 after a refresh": get(at(1, 401, token_refreshed=True), RAISE),
    "401 create after a refresh": create(at(1, 401, token_refreshed=True), RAISE),
    # -- 404 to a DELETE: done only if a lost attempt may have deleted it -------------
    "404 DELETE after an unknown outcome": delete(at(2, 404, unknown=True), Done()),
    "404 DELETE clean": delete(at(1, 404), RAISE),
    "404 DELETE on a later attempt, nothing lost": delete(at(2, 404), RAISE),
    "404 GET after an unknown outcome": get(at(2, 404, unknown=True), RAISE),
    "404 create after an unknown outcome": create(at(2, 404, unknown=True), RAISE),
    # -- 409 after an unknown outcome may be the lost attempt's own work --------------
    "409 create after an unknown outcome": create(at(2, 409, unknown=True), Reconcile(RAISE)),
    "409 blind POST after an unknown outcome": blind_post(at(2, 409, unknown=True), UNKNOWN),
    "409 create clean": create(at(1, 409), RAISE),
    "409 idempotent POST after an unknown outcome": update(at(2, 409, unknown=True), RAISE),
    "409 GET after an unknown outcome": get(at(2, 409, unknown=True), RAISE),
    # -- statuses no retry can change --------------------------------------------------
    "400 GET": get(at(1, 400), RAISE),
    "403 GET": get(at(1, 403), RAISE),
    "404 GET": get(at(1, 404), RAISE),
    "422 GET": get(at(1, 422), RAISE),
    "400 create": create(at(1, 400), RAISE),
    "403 create": create(at(1, 403), RAISE),
    "422 create": create(at(1, 422), RAISE),
    "400 create after an unknown outcome": create(at(2, 400, unknown=True), RAISE),
    "403 DELETE": delete(at(1, 403), RAISE),
    "418 GET": get(at(1, 418), RAISE),
    "501 GET": get(at(1, 501), RAISE),  # not in the policy's statuses
    "3xx left over GET": get(at(1, 304), RAISE),
    # -- 429: nothing was applied; pause everyone, even for a create ------------------
    "429 GET with Retry-After": get(at(1, 429, retry_after=5.0), Pause(5.0)),
    "429 create with Retry-After": create(at(1, 429, retry_after=5.0), Pause(5.0)),
    "429 blind POST with Retry-After": blind_post(at(1, 429, retry_after=5.0), Pause(5.0)),
    "429 without Retry-After backs off": create(at(1, 429), Pause(0.5)),
    "429 second retry backs off more": get(at(2, 429), Pause(1.0)),
    "429 Retry-After 0": get(at(1, 429, retry_after=0.0), Pause(0.0)),
    "429 on the last attempt": create(at(3, 429, retry_after=5.0), RAISE),
    # -- 5xx and 408 to what may be repeated: retry -----------------------------------
    "500 GET": get(at(1, 500), Retry(0.5)),
    "502 GET": get(at(1, 502), Retry(0.5)),
    "503 GET": get(at(1, 503), Retry(0.5)),
    "504 GET": get(at(1, 504), Retry(0.5)),
    "408 GET": get(at(1, 408), Retry(0.5)),
    "503 GET second retry": get(at(2, 503), Retry(1.0)),
    "503 GET with Retry-After": get(at(1, 503, retry_after=7.0), Retry(7.0)),
    "503 DELETE": delete(at(1, 503), Retry(0.5)),
    "500 idempotent POST": update(at(1, 500), Retry(0.5)),
    # -- 5xx and 408 to a create: it may have been applied ----------------------------
    "500 create": create(at(1, 500), Reconcile(Retry(0.5))),
    "503 create with Retry-After": create(at(1, 503, retry_after=7.0), Reconcile(Retry(7.0))),
    "408 create": create(at(1, 408), Reconcile(Retry(0.5))),
    "502 create second retry": create(at(2, 502, unknown=True), Reconcile(Retry(1.0))),
    "500 blind POST": blind_post(at(1, 500), UNKNOWN),
    "408 blind POST": blind_post(at(1, 408), UNKNOWN),
    # -- no response at all -----------------------------------------------------------
    "refused GET": get(at(1, sent=False), Retry(0.5)),
    "lost GET": get(at(1), Retry(0.5)),
    "lost DELETE": delete(at(1), Retry(0.5)),
    "lost idempotent POST": update(at(1), Retry(0.5)),
    "refused create: never applied": create(at(1, sent=False), Retry(0.5)),
    "refused blind POST: never applied": blind_post(at(1, sent=False), Retry(0.5)),
    "lost create": create(at(1), Reconcile(Retry(0.5))),
    "lost create again": create(at(2, unknown=True), Reconcile(Retry(1.0))),
    "lost blind POST": blind_post(at(1), UNKNOWN),
    "refused create after an unknown outcome": create(at(2, sent=False, unknown=True), Retry(1.0)),
    # -- attempts exhausted -----------------------------------------------------------
    "503 GET last attempt": get(at(3, 503), RAISE),
    "lost GET last attempt": get(at(3), RAISE),
    "refused GET last attempt": get(at(3, sent=False), RAISE),
    "503 DELETE last attempt": delete(at(3, 503), RAISE),
    "503 create last attempt": create(at(3, 503, unknown=True), Reconcile(RAISE)),
    "lost create last attempt": create(at(3, unknown=True), Reconcile(RAISE)),
    "refused create last attempt": create(at(3, sent=False), RAISE),
    "lost blind POST last attempt": blind_post(at(3), UNKNOWN),
    "past the last attempt": get(at(4, 503), RAISE),
    "503 GET, one attempt only": get(at(1, 503), RAISE, RetryPolicy.never()),
    "lost create, one attempt only": create(at(1), Reconcile(RAISE), RetryPolicy.never()),
    "refused create, one attempt only": create(at(1, sent=False), RAISE, RetryPolicy.never()),
    "backoff capped at max_delay": get(
        at(6, 503), Retry(8.0), RetryPolicy(attempts=10, jitter=lambda: 1.0)
    ),
    "backoff just under the cap": get(
        at(4, 503), Retry(4.0), RetryPolicy(attempts=10, jitter=lambda: 1.0)
    ),
    # -- max_wait: a wait that would overrun the call's budget gives up ---------------
    "max_wait: fits exactly": get(
        at(1, 503, waited=0.5), Retry(0.5), attrs.evolve(POLICY, max_wait=1.0)
    ),
    "max_wait: overruns": get(at(1, 503, waited=0.6), RAISE, attrs.evolve(POLICY, max_wait=1.0)),
    "max_wait: nothing waited, delay too long": get(
        at(1, 503, retry_after=5.0), RAISE, attrs.evolve(POLICY, max_wait=2.0)
    ),
    "max_wait: a 429's pause too long": create(
        at(1, 429, retry_after=5.0), RAISE, attrs.evolve(POLICY, max_wait=2.0)
    ),
    "max_wait: a 429's pause that fits": get(
        at(1, 429, retry_after=1.5), Pause(1.5), attrs.evolve(POLICY, max_wait=2.0)
    ),
    "max_wait 0: no waiting at all": get(at(1, 503), RAISE, attrs.evolve(POLICY, max_wait=0.0)),
    "max_wait 0: a Retry-After 0 is no wait": get(
        at(1, 429, retry_after=0.0), Pause(0.0), attrs.evolve(POLICY, max_wait=0.0)
    ),
    "max_wait: a lost create is still looked for": create(
        at(1, waited=0.9), Reconcile(RAISE), attrs.evolve(POLICY, max_wait=1.0)
    ),
    "max_wait: a lost blind POST is still unknown": blind_post(
        at(1, waited=0.9), UNKNOWN, attrs.evolve(POLICY, max_wait=1.0)
    ),
    # -- Retry-After capped by max_retry_after ----------------------------------------
    "Retry-After capped: 429": get(
        at(1, 429, retry_after=3600.0), Pause(10.0), attrs.evolve(POLICY, max_retry_after=10.0)
    ),
    "Retry-After capped: 503": get(
        at(1, 503, retry_after=3600.0), Retry(10.0), attrs.evolve(POLICY, max_retry_after=10.0)
    ),
    "Retry-After capped: infinite": get(at(1, 429, retry_after=float("inf")), Pause(60.0)),
    "Retry-After capped, then max_wait": get(
        at(1, 429, retry_after=3600.0),
        Pause(10.0),
        attrs.evolve(POLICY, max_retry_after=10.0, max_wait=10.0),
    ),
    "Retry-After capped on a create": create(
        at(1, 503, retry_after=3600.0),
        Reconcile(Retry(10.0)),
        attrs.evolve(POLICY, max_retry_after=10.0),
    ),
    # -- the policy's own list of retryable statuses ----------------------------------
    "custom statuses: 418 retried": get(
        at(1, 418), Retry(0.5), attrs.evolve(POLICY, retry_statuses=frozenset({418}))
    ),
    "custom statuses: 503 not retried": get(
        at(1, 503), RAISE, attrs.evolve(POLICY, retry_statuses=frozenset({418}))
    ),
    "custom statuses: transport still retried": get(
        at(1), Retry(0.5), attrs.evolve(POLICY, retry_statuses=frozenset())
    ),
}


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
def test_decide(row: Row) -> None:
    decision = decide(
        row.attempt,
        row.policy,
        method=row.method,
        idempotent=row.idempotent,
        can_reconcile=row.can_reconcile,
    )
    assert decision == row.expected


def test_decide_is_pure() -> None:
    """The same inputs give the same answer, with no state kept between calls."""
    rows = list(TABLE.values())
    first = [
        decide(
            r.attempt,
            r.policy,
            method=r.method,
            idempotent=r.idempotent,
            can_reconcile=r.can_reconcile,
        )
        for r in rows
    ]
    again = [
        decide(
            r.attempt,
            r.policy,
            method=r.method,
            idempotent=r.idempotent,
            can_reconcile=r.can_reconcile,
        )
        for r in reversed(rows)
    ]
    assert first == list(reversed(again))


# -- invariants over every combination ---------------------------------------------------

STATUSES: list[int | None] = [None, *range(200, 600)]


def _grid() -> Any:
    return itertools.product(
        STATUSES,
        (True, False),  # sent
        (True, False),  # unknown
        (True, False),  # token_refreshed
        (1, 2, 3),  # attempt number
        (True, False),  # can_reconcile
    )


def _maybe_applied(status: int | None, sent: bool) -> bool:
    """Sent and not answered, or answered with a retryable status other than 429."""
    if status is None:
        return sent
    return status != 429 and POLICY.retries_status(status)


def test_a_create_that_may_have_been_applied_is_never_resent_blindly() -> None:
    """Over every outcome: a non-idempotent POST is only retried when it certainly did
    not reach the server (refused, or a 429); otherwise it is reconciled first or
    reported as unknown."""
    for status, sent, unknown, refreshed, number, can_reconcile in _grid():
        attempt = Attempt(number, status, sent, None, unknown, refreshed)
        decision = decide(
            attempt, POLICY, method="POST", idempotent=False, can_reconcile=can_reconcile
        )
        if isinstance(decision, Retry):
            assert not _maybe_applied(status, sent), (attempt, can_reconcile, decision)
        if isinstance(decision, Reconcile):
            assert can_reconcile, (attempt, decision)
        if _maybe_applied(status, sent) and not can_reconcile:
            assert decision == UNKNOWN, (attempt, decision)


def test_nothing_is_retried_past_the_last_attempt() -> None:
    """On the last attempt the only answers are Done, a token refresh (not a retry),
    or giving up (possibly after looking for a lost create)."""
    for status, sent, unknown, refreshed, _, can_reconcile in _grid():
        for method, idempotent in (("GET", True), ("DELETE", True), ("POST", False)):
            attempt = Attempt(3, status, sent, None, unknown, refreshed)
            decision = decide(
                attempt, POLICY, method=method, idempotent=idempotent, can_reconcile=can_reconcile
            )
            assert not isinstance(decision, (Retry, Pause)), (method, attempt, decision)
            if isinstance(decision, Reconcile):
                assert isinstance(decision.then, Raise), (method, attempt, decision)


def test_every_2xx_is_done_and_only_a_401_refreshes_the_token() -> None:
    for status, sent, unknown, refreshed, number, can_reconcile in _grid():
        attempt = Attempt(number, status, sent, None, unknown, refreshed)
        decision = decide(
            attempt, POLICY, method="GET", idempotent=True, can_reconcile=can_reconcile
        )
        if status is not None and 200 <= status < 300:
            assert decision == Done()
        assert isinstance(decision, RefreshToken) == (status == 401 and not refreshed)


# -- parse_retry_after and http_date: rows test_retry.py does not have -------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5 ", 5.0),
        ("\t5\t", 5.0),
        ("007", 7.0),
        ("+5", None),  # a sign is not delta-seconds
        (".5", None),
        ("5.", None),
        ("1.5.2", None),
        ("1_000", None),  # Python's int() would take it; HTTP does not
        ("0x10", None),
        ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit, not to HTTP
        ("5, 10", None),
    ],
    ids=repr,
)
def test_parse_retry_after_more_forms(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, 0.0) == expected


SUNDAY = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", SUNDAY),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", SUNDAY),  # obsolete RFC 850 form
        ("Sun, 06 Nov 1994 08:49:37 UTC", SUNDAY),
        ("Sun, 06 Nov 1994 09:49:37 +0100", SUNDAY),  # a numeric zone is honoured
        ("Sun, 06 Nov 1994 08:49:37", None),  # no zone: the instant is not known
        ("Sun, 06 Nov 1994 08:49:37 -0000", None),  # RFC 5322: "-0000" means zone unknown
        ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ("Sun, 06 Nov 99999 08:49:37 GMT", None),
        ("", None),
        ("garbage", None),
        ("Sun, 06 Nov", None),
    ],
    ids=repr,
)
def test_http_date(text: str, expected: float | None) -> None:
    assert http_date(text) == expected


def test_http_date_accepts_the_asctime_form() -> None:
    assert http_date("Sun Nov  6 08:49:37 1994") == SUNDAY
    assert parse_retry_after("Sun Nov  6 08:49:47 1994", SUNDAY) == 10.0
