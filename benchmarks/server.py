"""The fake Conduit server in a child process, so client and server never share a loop.

The launcher lives in the testing package (:class:`conduit_async.testing.FakeServerProcess`);
these names keep the benchmarks' spelling, with fast mode (no per-route counters) on by
default since a benchmark measures the server's throughput, not its bookkeeping.
"""

from __future__ import annotations

from conduit_async.testing import FakeServerInfo, FakeServerProcess

__all__ = ["FakeServer", "ServerInfo"]

ServerInfo = FakeServerInfo


class FakeServer(FakeServerProcess):
    """``with FakeServer(token_ttl=600) as info:`` runs a fake server for the block, in
    fast mode unless told otherwise."""

    def __init__(
        self, *, token_ttl: float = 600.0, fast: bool = True, revoke_on_reissue: bool = False
    ) -> None:
        super().__init__(token_ttl=token_ttl, fast=fast, revoke_on_reissue=revoke_on_reissue)
