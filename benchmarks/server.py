"""The fake Conduit server in a child process, so client and server never share a loop.

``FakeServer`` starts ``python -m conduit_async.testing --port 0 --json --fast``, reads
the one JSON line it prints (URLs and tokens), and stops it with SIGTERM on exit (then
SIGKILL if it lingers), also when the benchmark fails or is interrupted.
"""

from __future__ import annotations

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

__all__ = ["FakeServer", "ServerInfo"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0


@attrs.frozen
class ServerInfo:
    """Where a running fake server listens, and the tokens it accepts."""

    url: str
    base_url: str
    link_base_url: str
    org_token: str = attrs.field(repr=False)
    link_token: str = attrs.field(repr=False)
    token_ttl: float
    pid: int

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (Linux only; None elsewhere)."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fake_stats(self) -> dict[str, Any]:
        """The server's counters (``GET /_fake/stats``), fetched synchronously."""
        with urllib.request.urlopen(self.url + "_fake/stats", timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data


class FakeServer:
    """``with FakeServer(token_ttl=600) as info:`` runs a fake server for the block.

    The server runs in fast mode (no per-route counters). Its stderr goes to a temporary
    file, shown if it fails to start.
    """

    def __init__(self, *, token_ttl: float = 600.0, fast: bool = True) -> None:
        self.token_ttl = token_ttl
        self.fast = fast
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def __enter__(self) -> ServerInfo:
        try:
            return self._start()
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

    def _start(self) -> ServerInfo:
        cmd = [
            sys.executable,
            "-m",
            "conduit_async.testing",
            "--port",
            "0",
            "--json",
            "--token-ttl",
            repr(self.token_ttl),
        ]
        if self.fast:
            cmd.append("--fast")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (outlives this call; stop() closes it)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            # Its own session: a Ctrl-C at the terminal reaches only us, and we stop it.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        line = self._first_line()
        data = json.loads(line)
        return ServerInfo(
            url=data["url"],
            base_url=data["base_url"],
            link_base_url=data["link_base_url"],
            org_token=data["org_token"],
            link_token=data["link_token"],
            token_ttl=self.token_ttl,
            pid=self._proc.pid,
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
        return f"FakeServer(token_ttl={self.token_ttl!r}, pid={pid})"

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL after a grace period. Safe to call twice."""
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
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM if the benchmark dies (even by
    SIGKILL), so no server outlives it. Elsewhere stop() is the only way out."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
