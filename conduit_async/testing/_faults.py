"""Deterministic misbehaviour for the fake server: the failures a real network and a real
Conduit produce now and then (rate limits, 5xx, resets, responses lost after the change
was made, stalls), made reproducible so a test that finds a bug finds it every time."""

from __future__ import annotations

import enum
import itertools
import random
from collections import deque
from collections.abc import Collection, Sequence
from typing import Literal

import attrs

__all__ = ["FAULT_MIX", "Fault", "FaultInjector", "FaultKind"]

ANY_ROUTE = "*"


class FaultKind(str, enum.Enum):
    """How a request misbehaves."""

    STATUS = "status"
    """An error status sent instead of running the handler."""
    RESET = "reset"
    """The connection is reset before the handler runs: nothing changed on the server."""
    LOST = "lost"
    """The handler runs and commits, then the connection is dropped with no response."""
    LATENCY = "latency"
    """A real delay before the request is handled normally."""


@attrs.frozen
class Fault:
    """One injected failure. Build them with :meth:`status`, :meth:`reset`, :meth:`lost`
    and :meth:`latency`."""

    kind: FaultKind
    status_code: int | None = None
    retry_after: float | str | None = None
    """Seconds, or a string sent verbatim (e.g. an HTTP date)."""
    retry_after_format: Literal["seconds", "http-date"] = "seconds"
    body: str | None = None
    seconds: float = 0.0

    @classmethod
    def status(
        cls,
        code: int = 503,
        *,
        retry_after: float | str | None = None,
        retry_after_format: Literal["seconds", "http-date"] = "seconds",
        body: str | None = None,
    ) -> Fault:
        """Answer ``code`` (400-599) without running the handler.

        ``retry_after`` adds a ``Retry-After`` header: a number of seconds is sent as
        delay-seconds, or with ``retry_after_format="http-date"`` as the HTTP date that
        many seconds after the server's now; a string is sent as it is. The body is
        ``{"code", "message"}`` JSON unless ``body`` gives other text (sent as
        ``text/html`` if it starts with ``<``, else ``text/plain``), for testing that
        the SDK copes with whatever a proxy in the way sends.
        """
        if not 400 <= code <= 599:
            raise ValueError(f"a fault status must be 400-599, not {code}")
        if isinstance(retry_after, (int, float)) and retry_after < 0:
            raise ValueError(f"retry_after must not be negative ({retry_after!r})")
        if retry_after_format not in ("seconds", "http-date"):
            raise ValueError(f"unknown retry_after_format {retry_after_format!r}")
        return cls(
            FaultKind.STATUS,
            status_code=code,
            retry_after=retry_after,
            retry_after_format=retry_after_format,
            body=body,
        )

    @classmethod
    def reset(cls) -> Fault:
        """Reset the connection (TCP RST) before the handler runs."""
        return cls(FaultKind.RESET)

    @classmethod
    def lost(cls) -> Fault:
        """Run the handler, keep its change, then drop the connection unanswered: the
        case that makes blind retries of a create dangerous."""
        return cls(FaultKind.LOST)

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Really wait ``seconds`` (``asyncio.sleep``, not the injected clock) before
        handling the request. Longer than the client's timeout it is a stall: the
        request is still handled afterwards, as a slow real server would, unless the
        fake server closes first."""
        if seconds < 0:
            raise ValueError(f"latency must not be negative ({seconds!r})")
        return cls(FaultKind.LATENCY, seconds=float(seconds))

    @property
    def label(self) -> str:
        """The key this fault is counted under in ``stats.faults_injected``."""
        if self.kind is FaultKind.STATUS:
            return f"status_{self.status_code}"
        return str(self.kind.value)


FAULT_MIX: tuple[tuple[Fault, float], ...] = (
    (Fault.status(429, retry_after=1), 3.0),
    (Fault.status(500), 1.0),
    (Fault.status(502), 1.0),
    (Fault.status(503, retry_after=1), 1.0),
    (Fault.reset(), 2.0),
    (Fault.lost(), 2.0),
)
"""The failures :meth:`FaultInjector.random_mix` draws, with their weights: rate limits
(``Retry-After: 1``), server errors, connections reset before the server acted and
responses lost after it did. No latency: a stall costs real time."""


class _RandomRule:
    """A rate and a weighted mix of faults, drawn from a private seeded generator so that
    one rule's draws do not depend on any other rule or on the global ``random``."""

    __slots__ = ("_cum_weights", "_faults", "_rate", "_rng")

    def __init__(
        self, rate: float, faults: Sequence[Fault], weights: Sequence[float], rng: random.Random
    ) -> None:
        self._rate = rate
        self._faults = list(faults)
        self._cum_weights = list(itertools.accumulate(weights))
        self._rng = rng

    def draw(self) -> Fault | None:
        rng = self._rng
        if rng.random() >= self._rate:
            return None
        return rng.choices(self._faults, cum_weights=self._cum_weights)[0]


class FaultInjector:
    """The faults planned per route, reached as ``fake.faults``.

    For each request the first of these that applies decides: the route's script, the
    ``"*"`` script, the route's random rule, the ``"*"`` random rule. A script entry of
    ``None`` lets its request through untouched (and does not fall through to the
    others); an exhausted script no longer applies.
    """

    def __init__(self, routes: Collection[str], seed: int) -> None:
        self._routes = frozenset(routes)
        self._seed = seed
        self._scripts: dict[str, deque[Fault | None]] = {}
        self._random: dict[str, _RandomRule] = {}
        self.active = False
        """False while no fault is planned, so the server skips the lookup entirely."""

    def script(self, route: str, faults: Sequence[Fault | None]) -> None:
        """Play ``faults`` to the next requests to ``route`` (a spec route key such as
        ``"POST /link/company/"``, or ``"*"`` for any route), one per request, ``None``
        meaning no fault; after the last one, requests pass. Replaces an earlier script
        for the same route."""
        self._check_route(route)
        for fault in faults:
            if fault is not None and not isinstance(fault, Fault):
                raise TypeError(f"expected Fault or None, got {fault!r}")
        if faults:
            self._scripts[route] = deque(faults)
        else:
            self._scripts.pop(route, None)
        self._refresh()

    def random(
        self,
        route: str,
        *,
        rate: float,
        kinds: Sequence[Fault],
        weights: Sequence[float] | None = None,
        seed: int | None = None,
    ) -> None:
        """Give each request to ``route`` (or ``"*"``) probability ``rate`` of one of
        ``kinds``, chosen with ``weights`` (equal by default).

        The draws come from a generator seeded with ``seed`` (the server's ``seed`` if
        None) and the route key, so the same seed and the same order of requests give
        the same faults. Replaces an earlier random rule for the same route.
        """
        self._check_route(route)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {rate!r}")
        if not kinds:
            raise ValueError("kinds must name at least one Fault")
        for fault in kinds:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {fault!r}")
        if weights is None:
            weights = [1.0] * len(kinds)
        elif len(weights) != len(kinds) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be one non-negative number per kind, not all zero")
        rule_seed = self._seed if seed is None else seed
        rng = random.Random(f"{rule_seed}:{route}")
        self._random[route] = _RandomRule(rate, kinds, weights, rng)
        self._refresh()

    def random_mix(self, rate: float, *, route: str = ANY_ROUTE) -> None:
        """Give each request to ``route`` (every route by default) probability ``rate``
        of one fault of :data:`FAULT_MIX` (429 with ``Retry-After``, 5xx, resets, lost
        responses), seeded with the server's ``seed``: what ``FakeConduit(fault_rate=)``
        and ``conduit-async fake-server --faults RATE`` turn on."""
        kinds = [fault for fault, _ in FAULT_MIX]
        self.random(route, rate=rate, kinds=kinds, weights=[weight for _, weight in FAULT_MIX])

    def clear(self, route: str | None = None) -> None:
        """Remove the script and random rule of ``route``, or every plan when None."""
        if route is None:
            self._scripts.clear()
            self._random.clear()
        else:
            self._check_route(route)
            self._scripts.pop(route, None)
            self._random.pop(route, None)
        self._refresh()

    def remaining(self, route: str) -> int:
        """Entries of ``route``'s script not yet played (``None`` entries included)."""
        self._check_route(route)
        return len(self._scripts.get(route, ()))

    def next_fault(self, route: str) -> Fault | None:
        """Decide, and consume, the fault for one request to ``route``. The server calls
        this once per request; tests should not need to."""
        scripts = self._scripts
        for key in (route, ANY_ROUTE):
            queue = scripts.get(key)
            if queue:
                fault = queue.popleft()
                if not queue:
                    del scripts[key]
                    self._refresh()
                return fault
        rule = self._random.get(route) or self._random.get(ANY_ROUTE)
        return rule.draw() if rule is not None else None

    def _check_route(self, route: str) -> None:
        if route != ANY_ROUTE and route not in self._routes:
            known = ", ".join(sorted(self._routes))
            raise ValueError(f"unknown route {route!r}; expected '*' or one of: {known}")

    def _refresh(self) -> None:
        self.active = bool(self._scripts or self._random)
