"""An embedded fake Conduit server for tests, benchmarks and offline development.

``FakeConduit`` speaks the v2 and Link APIs of the spec over real HTTP on a local port,
with real authorization and company-token expiry, switchable preconditions, a skewable
server clock, deterministic fault injection and counters to assert on::

    from conduit_async.testing import FakeConduit, Fault, ManualClock

    clock = ManualClock()
    async with FakeConduit(clock=clock) as fake:
        fake.faults.script("POST /link/company/", [Fault.status(429, retry_after=2)])
        ...  # point the SDK at fake.base_url / fake.link_base_url
        assert fake.stats.expired_token_requests == 0

``conduit-async fake-server`` (or ``python -m conduit_async.testing``) runs it as a
stand-alone server; :class:`FakeServerProcess` runs that in a child process for a test
or a benchmark::

    with FakeServerProcess(token_ttl=60) as server:
        env = server.environment()  # CONDUIT_TOKEN, CONDUIT_BASE_URL, ...
        ...  # run a command or worker processes against it
        assert server.fake_stats()["expired_token_requests"] == 0
"""

from ._faults import FAULT_MIX, Fault, FaultInjector, FaultKind
from ._process import FakeServerInfo, FakeServerProcess
from ._server import ROUTES, FakeConduit
from ._state import (
    Account,
    Company,
    Credential,
    Dashboard,
    Grant,
    Integration,
    IssuedToken,
    TokenKind,
    Workspace,
)
from ._stats import ExpiredTokenUse, FakeStats
from .clock import ManualClock

ROUTE_KEYS: tuple[str, ...] = tuple(route.key for route in ROUTES)
"""Every API route key the fake serves, in the spec's ``"METHOD /pattern/"`` form."""

__all__ = [
    "FAULT_MIX",
    "ROUTE_KEYS",
    "Account",
    "Company",
    "Credential",
    "Dashboard",
    "ExpiredTokenUse",
    "FakeConduit",
    "FakeServerInfo",
    "FakeServerProcess",
    "FakeStats",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "Grant",
    "Integration",
    "IssuedToken",
    "ManualClock",
    "TokenKind",
    "Workspace",
]
