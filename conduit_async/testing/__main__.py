"""``python -m conduit_async.testing``: the fake Conduit server as a stand-alone process,
for trying the SDK or a CLI by hand, and for benchmarks that must not share an event loop
with the server they measure.

With ``--json`` the first stdout line is one JSON object (``url``, ``base_url``,
``link_base_url``, ``org_token``, ``link_token``), flushed as soon as the port is bound, so
a parent process can read where to connect and then leave the pipe alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import TextIO

from ._server import FakeConduit

__all__ = ["main", "serve"]


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token_ttl: float = 600.0,
    seed: int = 0,
    fast: bool = False,
    org_token: str | None = None,
    link_token: str | None = None,
    json_output: bool = False,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a FakeConduit until ``stop`` is set, announcing it on ``out`` (stdout).

    Without a ``stop`` event this is the foreground program: SIGINT and SIGTERM end it
    cleanly (where the platform lets asyncio handle signals; elsewhere Ctrl-C raises
    ``KeyboardInterrupt`` as usual).
    """
    out = sys.stdout if out is None else out
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            handled.append(signum)
    try:
        async with FakeConduit(
            host=host,
            port=port,
            token_ttl=token_ttl,
            seed=seed,
            fast=fast,
            org_token=org_token,
            link_token=link_token,
        ) as fake:
            if json_output:
                line = {
                    "url": fake.url,
                    "base_url": fake.base_url,
                    "link_base_url": fake.link_base_url,
                    "org_token": fake.org_token,
                    "link_token": fake.link_token,
                }
                out.write(json.dumps(line) + "\n")
            else:
                out.write(
                    f"Fake Conduit server at {fake.url}\n"
                    f"  v2 API base URL:   {fake.base_url}\n"
                    f"  Link API base URL: {fake.link_base_url}\n"
                    f"  organization token: {fake.org_token}\n"
                    f"  Link APP token:     {fake.link_token}\n"
                    f"  counters:          {fake.url}_fake/stats\n"
                    "Press Ctrl-C to stop.\n"
                )
            out.flush()
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conduit_async.testing",
        description="Run a fake Conduit API server (v2 and Link) until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to bind, 0 for any free one (%(default)s)"
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=600.0,
        help="company token lifetime in seconds (%(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of random faults (%(default)s)")
    parser.add_argument(
        "--fast", action="store_true", help="skip per-route/status counters (for benchmarks)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON line with URLs and tokens"
    )
    parser.add_argument("--org-token", help="fixed organization token (random by default)")
    parser.add_argument("--link-token", help="fixed Link APP token (random by default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground; the exit status is 0 after a clean stop."""
    args = _parser().parse_args(argv)
    if args.token_ttl <= 0:
        _parser().error("--token-ttl must be positive")
    try:
        asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                token_ttl=args.token_ttl,
                seed=args.seed,
                fast=args.fast,
                org_token=args.org_token,
                link_token=args.link_token,
                json_output=args.json,
            )
        )
    except KeyboardInterrupt:
        pass
    except OSError as error:  # typically the port is taken
        print(f"error: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
