"""A real `redis-server` for the shared-store tests: on a free loopback port, in a
temporary directory, with no persistence; killed and restarted on demand.

Where `redis-server` (Debian package `redis-server`) or redis-py is missing, the tests
that need it skip with a reason saying how to install it, unless
`CONDUIT_REQUIRE_REDIS=1` (as in CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["RedisServer", "require_redis"]

_START_TIMEOUT = 10.0


def require_redis() -> str:
    """The path of `redis-server`; skips (or fails, under CONDUIT_REQUIRE_REDIS=1) without
    it or without the redis extra."""
    required = os.environ.get("CONDUIT_REQUIRE_REDIS") == "1"
    missing = None
    binary = shutil.which("redis-server")
    if binary is None:
        missing = "redis-server is not installed (apt-get install redis-server)"
    else:
        try:
            import cryptography  # noqa: F401
            import redis  # noqa: F401
        except ImportError:
            missing = 'the redis extra is not installed (pip install -e ".[redis]")'
    if missing is not None:
        if required:
            pytest.fail(f"CONDUIT_REQUIRE_REDIS=1 but {missing}")
        pytest.skip(missing)
    assert binary is not None
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One `redis-server` process; `kill()` and `start()` again keep its port."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--loglevel",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: as a crash, with no goodbye to the clients."""
        self._stop(signal.SIGKILL)

    def stop(self) -> None:
        self._stop(signal.SIGTERM)

    def freeze(self) -> None:
        """SIGSTOP: a Redis that accepts nothing new and answers nothing (a hung host):
        its clients time out rather than being refused."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def _stop(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a frozen one must be able to die
            proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def dump(self) -> dict[bytes, bytes]:
        """Every string key and its value (for the "nothing in clear" check)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            return {k: client.get(k) or b"" for k in client.keys("*")}
        finally:
            client.close()

    def command(self, *args: str) -> object:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            return client.execute_command(*args)
        finally:
            client.close()
