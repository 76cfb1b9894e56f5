"""The fake Conduit server in a child process: for tests of the ``conduit-async`` command
and other processes, and for benchmarks whose client must not share an event loop (or a
CPU budget) with the server it measures.

:class:`FakeServerProcess` runs ``python -m conduit_async.testing --port 0 --json``,
reads the one JSON line it prints (URLs and tokens) and stops it with SIGTERM (then
SIGKILL if it lingers), also when the block that used it fails or is interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from types import TracebackType
from typing import IO, Any

import attrs

from ._server import client_environment

__all__ = ["FakeServerInfo", "FakeServerProcess"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0
_HTTP_TIMEOUT = 10.0

ANNOUNCED = ("url", "base_url", "link_base_url", "org_token", "link_token")
"""The keys of the JSON line ``--json`` prints, in order."""


@attrs.frozen
class FakeServerInfo:
    """Where a running fake server process listens, the tokens it accepts, and a few
    synchronous calls to its ``/_fake/`` control routes."""

    url: str
    """Root URL with a trailing slash, e.g. ``http://127.0.0.1:40123/``."""
    base_url: str
    link_base_url: str
    org_token: str = attrs.field(repr=False)
    link_token: str = attrs.field(repr=False)
    token_ttl: float
    pid: int

    def environment(self) -> dict[str, str]:
        """The ``CONDUIT_*`` variables that point the SDK or the ``conduit-async``
        command at this server (both tokens, both base URLs)."""
        return client_environment(
            base_url=self.base_url,
            link_base_url=self.link_base_url,
            org_token=self.org_token,
            link_token=self.link_token,
        )

    def fake_stats(self) -> dict[str, Any]:
        """The server's counters (``GET /_fake/stats``)."""
        return self._call("GET", "_fake/stats")

    def advance_clock(self, seconds: float) -> float:
        """Move the server's time forward (``POST /_fake/clock``); returns the new
        server time. A client in another process sees it through the ``Date`` header."""
        now = self._call("POST", "_fake/clock", {"advance": seconds})["now"]
        assert isinstance(now, (int, float))
        return float(now)

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (Linux only; None elsewhere)."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _call(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
            reply: dict[str, Any] = json.loads(response.read())
        return reply


class FakeServerProcess:
    """``with FakeServerProcess() as server:`` runs a fake server process for the block;
    ``server`` is a :class:`FakeServerInfo`. ``async with`` works too, waiting for the
    process to start and to stop in a worker thread so the event loop keeps running.

    The options are those of ``conduit-async fake-server``: ``token_ttl`` (seconds),
    ``seed`` and ``fault_rate`` (random faults of ``FAULT_MIX``, a share of requests),
    ``fast`` (no per-route counters), ``revoke_on_reissue``, and fixed ``org_token`` /
    ``link_token`` (random by default). The server's stderr goes to a temporary file,
    shown if it fails to start. After the block, :attr:`returncode` is its exit status
    (0 after a clean stop).

    On Linux the child also gets SIGTERM if this process dies, even by SIGKILL, so no
    server outlives its user.
    """

    def __init__(
        self,
        *,
        token_ttl: float = 600.0,
        fast: bool = False,
        seed: int = 0,
        fault_rate: float = 0.0,
        revoke_on_reissue: bool = False,
        org_token: str | None = None,
        link_token: str | None = None,
    ) -> None:
        self.token_ttl = token_ttl
        self.fast = fast
        self.seed = seed
        self.fault_rate = fault_rate
        self.revoke_on_reissue = revoke_on_reissue
        self._org_token = org_token
        self._link_token = link_token
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.returncode: int | None = None
        """The server's exit status once stopped; None before."""

    def command(self) -> list[str]:
        """The command line that starts the server."""
        cmd = [
            sys.executable,
            "-m",
            "conduit_async.testing",
            "--port",
            "0",
            "--json",
            "--token-ttl",
            repr(self.token_ttl),
            "--seed",
            str(self.seed),
        ]
        if self.fault_rate:
            cmd += ["--faults", repr(self.fault_rate)]
        if self.fast:
            cmd.append("--fast")
        if self.revoke_on_reissue:
            cmd.append("--revoke-on-reissue")
        if self._org_token is not None:
            cmd += ["--org-token", self._org_token]
        if self._link_token is not None:
            cmd += ["--link-token", self._link_token]
        return cmd

    def __enter__(self) -> FakeServerInfo:
        self._check_idle()
        try:
            self._spawn()
            return self._announcement()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeServerInfo:
        # Spawned from this thread, not a worker: Linux sends the parent-death signal
        # when the thread that forked the child ends, and a worker thread may end first.
        self._check_idle()
        try:
            self._spawn()
        except BaseException:
            self.stop()
            raise
        reading = asyncio.ensure_future(asyncio.to_thread(self._announcement))
        try:
            return await asyncio.shield(reading)
        except BaseException:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.kill()  # ends the read in the worker thread (end of file)
            await asyncio.wait([reading])
            await asyncio.to_thread(self.stop)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _check_idle(self) -> None:
        if self._proc is not None:
            raise RuntimeError("this FakeServerProcess is already running")

    def _spawn(self) -> None:
        self.returncode = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (outlives this call; stop() closes it)
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            # Its own session: a Ctrl-C at the terminal reaches only us, and we stop it.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def _announcement(self) -> FakeServerInfo:
        """Wait for the server's JSON line and read where it listens."""
        proc = self._proc
        assert proc is not None
        data = json.loads(self._first_line())
        if not isinstance(data, dict) or set(data) != set(ANNOUNCED):
            shape = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise RuntimeError(f"the fake server's first line is not its announcement: {shape}")
        return FakeServerInfo(
            url=data["url"],
            base_url=data["base_url"],
            link_base_url=data["link_base_url"],
            org_token=data["org_token"],
            link_token=data["link_token"],
            token_ttl=self.token_ttl,
            pid=proc.pid,
        )

    def _first_line(self) -> bytes:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + _START_TIMEOUT
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"the fake server did not start in {_START_TIMEOUT:g} s")
                if not sel.select(left):
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    proc.wait(timeout=_STOP_TIMEOUT)
                    raise RuntimeError(
                        f"the fake server exited ({proc.returncode}) before announcing "
                        f"itself:\n{self._stderr_text()}"
                    )
                buf += chunk
        return buf.split(b"\n", 1)[0]

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-4000:].decode(errors="replace")

    def __repr__(self) -> str:
        pid = self._proc.pid if self._proc is not None else None
        return f"{type(self).__name__}(token_ttl={self.token_ttl!r}, pid={pid})"

    def stop(self) -> int | None:
        """SIGTERM (a clean stop), then SIGKILL after a grace period; returns the exit
        status (None if it was not running). Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            self.returncode = proc.returncode
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return self.returncode


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM if the parent dies (even by
    SIGKILL), so no server outlives it. Elsewhere stop() is the only way out."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
