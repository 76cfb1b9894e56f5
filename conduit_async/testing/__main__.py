"""``conduit-async fake-server`` (or ``python -m conduit_async.testing``): the fake
Conduit server as a stand-alone process, for trying the SDK or the CLI by hand, and for
tests and benchmarks that must not share an event loop with the server they use.

With ``--json`` the first stdout line is one JSON object (``url``, ``base_url``,
``link_base_url``, ``org_token``, ``link_token``), flushed as soon as the port is bound, so
a parent process can read where to connect and then leave the pipe alone
(:class:`~conduit_async.testing.FakeServerProcess` does that).

With ``--env`` stdout gets four ``export CONDUIT_...=...`` lines (both tokens and both
base URLs, shell-quoted); then the server lets go of stdout (points it at /dev/null),
says on stderr how to stop it (``kill <pid>``) and keeps serving. Both ways of using the
lines then work: copy them from the server's terminal into another shell, or run
``eval "$(conduit-async fake-server --env &)"``, which returns as soon as the lines are
out (the shell's ``$(...)`` waits for the end of output, not for the process) and leaves
the server running in the background. Had the server kept stdout while serving in the
foreground, the plain ``eval "$(...)"`` could never return.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable
from typing import Literal, TextIO

from ._process import ANNOUNCED
from ._server import FakeConduit

__all__ = ["main", "serve"]

PROG = "conduit-async fake-server"

Announce = Literal["text", "json", "env"]

_EPILOG = """\
control routes (no token needed):
  GET  /_fake/stats          what clients did: requests, tokens issued, faults, ...
  POST /_fake/stats/reset    zero the counters
  GET  /_fake/clock          {"now": server time, "offset": seconds added to real time}
  POST /_fake/clock          {"advance": 660} moves the server's time forward, e.g. to
                             watch company tokens expire without waiting 10 minutes
                             (400 with a JSON error for any other body)

--env prints four 'export CONDUIT_...' lines, then keeps serving with stdout let go,
so either copy them into another shell, or configure this shell with the server in the
background (it says on stderr which kill command stops it):
  eval "$(conduit-async fake-server --port 8080 --env &)"

examples:
  conduit-async fake-server --port 8080
  conduit-async fake-server --faults 0.05 --seed 7 --revoke-on-reissue
  curl -X POST -d '{"advance": 660}' http://127.0.0.1:8080/_fake/clock
"""


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token_ttl: float = 600.0,
    seed: int = 0,
    fault_rate: float = 0.0,
    fast: bool = False,
    revoke_on_reissue: bool = False,
    org_token: str | None = None,
    link_token: str | None = None,
    announce: Announce = "text",
    out: TextIO | None = None,
    announced: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a FakeConduit until ``stop`` is set, announcing it on ``out`` (stdout) as
    ``announce`` says: a banner for a person, one JSON line, or shell ``export`` lines.
    ``announced`` is called once that is written and flushed.

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
            fault_rate=fault_rate,
            fast=fast,
            revoke_on_reissue=revoke_on_reissue,
            org_token=org_token,
            link_token=link_token,
        ) as fake:
            out.write(_announcement(fake, announce))
            out.flush()
            if announced is not None:
                announced()
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _announcement(fake: FakeConduit, announce: Announce) -> str:
    if announce == "json":
        return json.dumps({key: getattr(fake, key) for key in ANNOUNCED}) + "\n"
    if announce == "env":
        variables = fake.environment().items()
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables)
    return (
        f"Fake Conduit server at {fake.url}\n"
        f"  v2 API base URL:   {fake.base_url}\n"
        f"  Link API base URL: {fake.link_base_url}\n"
        f"  organization token: {fake.org_token}\n"
        f"  Link APP token:     {fake.link_token}\n"
        f"  counters:          {fake.url}_fake/stats\n"
        f"  virtual clock:     {fake.url}_fake/clock\n"
        "Press Ctrl-C to stop.\n"
    )


def _let_go_of_stdout() -> None:
    """Say on stderr (the terminal, usually) how to stop a server that may be about to
    run in the background; then point file descriptor 1 at /dev/null, so a reader
    waiting for the end of our output (``$(...)`` in a shell) gets it while the server
    keeps running."""
    pid = os.getpid()
    print(f"{PROG}: serving as process {pid}; stop it with: kill {pid}", file=sys.stderr)
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _rate(text: str) -> float:
    """An argparse type: a share of requests, 0 to 1."""
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise argparse.ArgumentTypeError(f"must be from 0 to 1 (a share of requests), not {text}")
    return rate


def _ttl(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a fake Conduit API server (v2 and Link) until Ctrl-C or SIGTERM.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to bind, 0 for any free one (%(default)s)"
    )
    parser.add_argument(
        "--token-ttl",
        type=_ttl,
        default=600.0,
        metavar="SECONDS",
        help="company token lifetime in seconds (%(default)s)",
    )
    parser.add_argument(
        "--faults",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="inject random faults into this share of requests on every route, e.g. 0.05: "
        "429 with Retry-After, 5xx, connection resets, responses lost after the change "
        "was made (default: none)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the --faults draws (%(default)s)"
    )
    parser.add_argument(
        "--revoke-on-reissue",
        action="store_true",
        help="a company's earlier tokens stop working (401) when it is issued a new one",
    )
    parser.add_argument(
        "--fast", action="store_true", help="skip per-route/status counters (for benchmarks)"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="print one JSON line with URLs and tokens"
    )
    output.add_argument(
        "--env",
        action="store_true",
        help="print 'export CONDUIT_...' lines for a shell, then keep serving with stdout "
        "let go (see below)",
    )
    parser.add_argument("--org-token", help="fixed organization token (random by default)")
    parser.add_argument("--link-token", help="fixed Link APP token (random by default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground; the exit status is 0 after a clean stop."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.org_token is not None and args.org_token == args.link_token:
        parser.error("--org-token and --link-token must differ")
    announce: Announce = "json" if args.json else "env" if args.env else "text"
    try:
        asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                token_ttl=args.token_ttl,
                seed=args.seed,
                fault_rate=args.faults,
                fast=args.fast,
                revoke_on_reissue=args.revoke_on_reissue,
                org_token=args.org_token,
                link_token=args.link_token,
                announce=announce,
                announced=_let_go_of_stdout if args.env else None,
            )
        )
    except KeyboardInterrupt:
        pass
    except OSError as error:  # typically the port is taken
        print(f"{PROG}: error: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
