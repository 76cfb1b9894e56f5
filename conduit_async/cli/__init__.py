"""The `conduit-async` command: bulk provisioning, everyday tasks, a demo, a fake server.

`main(argv)` returns the exit status instead of exiting, so it can be called
in-process (tests) as well as by the console script. Failures print one line
to stderr, never a traceback (with `--json`, one JSON object): the messages
of the SDK's errors say what went wrong and never carry a token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

from ..errors import (
    APIStatusError,
    AuthenticationError,
    ConduitError,
    ConfigurationError,
    PermissionDeniedError,
    ValidationError,
)
from ._config import UsageError
from ._exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, report_error
from ._parser import ArgumentsError, build_parser

__all__ = ["main"]

#: Errors that mean "fix the command or its configuration" rather than "try again".
_USAGE_ERRORS = (
    UsageError,
    ConfigurationError,
    ValidationError,
    AuthenticationError,
    PermissionDeniedError,
)

Handler = Callable[..., Coroutine[Any, Any, int]]


def _log_to_stderr() -> logging.Handler:
    """SDK warnings (a too-small connection pool, a failed background refresh) as one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("conduit-async: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("conduit_async")
    logger.addHandler(handler)
    return handler


def _wants_json(argv: list[str]) -> bool:
    """`--json` among the options: known before parsing, for an error in the parsing itself."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in options


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    as_json = _wants_json(argv)
    try:
        args, extra = parser.parse_known_args(argv)
        if getattr(args, "passthrough", False):
            from ..testing.__main__ import main as fake_server

            return fake_server(extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except ArgumentsError as error:
        if as_json:
            report_error("UsageError", str(error), as_json=True)
        else:
            error.parser.print_usage(sys.stderr)
            print(f"{error.parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit:  # argparse: --help or --version
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    handler = cast("Handler | None", getattr(args, "handler", None))
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    log_handler = _log_to_stderr()
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        report_error("Interrupted", "interrupted", as_json=as_json)
        return EXIT_INTERRUPTED
    except _USAGE_ERRORS as error:
        _report(error, str(error), as_json)
        return EXIT_USAGE
    except ConduitError as error:
        _report(error, str(error), as_json)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader of our output left (`| head`): not an error worth a message. Point
        # stdout at /dev/null so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        _report(error, f"{error.strerror or error}{where}", as_json)
        return EXIT_FAILED
    except Exception as error:  # a bug: still one line, as promised, but say what it was
        _report(error, f"unexpected {type(error).__name__}: {error}", as_json)
        return EXIT_FAILED
    finally:
        logging.getLogger("conduit_async").removeHandler(log_handler)


def _report(error: BaseException, message: str, as_json: bool) -> None:
    status = error.status if isinstance(error, APIStatusError) else None
    report_error(type(error).__name__, message, as_json=as_json, status=status)
