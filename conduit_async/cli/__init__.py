"""The `conduit-async` command: bulk provisioning, everyday tasks, a demo, a fake server.

`main(argv)` returns the exit status instead of exiting, so it can be called
in-process (tests) as well as by the console script. Failures print one line
to stderr, never a traceback: the messages of the SDK's errors say what went
wrong and never carry a token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

from ..errors import (
    AuthenticationError,
    ConduitError,
    ConfigurationError,
    PermissionDeniedError,
    ValidationError,
)
from ._config import UsageError
from ._parser import build_parser

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Errors that mean "fix the command or its configuration" rather than "try again".
_USAGE_ERRORS = (
    UsageError,
    ConfigurationError,
    ValidationError,
    AuthenticationError,
    PermissionDeniedError,
)

Handler = Callable[..., Coroutine[Any, Any, int]]


def _error(message: str) -> None:
    print(f"conduit-async: error: {message}", file=sys.stderr, flush=True)


def _log_to_stderr() -> logging.Handler:
    """SDK warnings (a too-small connection pool, a failed background refresh) as one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("conduit-async: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("conduit_async")
    logger.addHandler(handler)
    return handler


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`); return the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
        if getattr(args, "passthrough", False):
            from ..testing.__main__ import main as fake_server

            return fake_server(extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit:  # argparse: --help (0) or a usage error (2)
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    handler = cast("Handler | None", getattr(args, "handler", None))
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    log_handler = _log_to_stderr()
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except _USAGE_ERRORS as error:
        _error(str(error))
        return EXIT_USAGE
    except ConduitError as error:
        _error(str(error))
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader of our output left (`| head`): not an error worth a message. Point
        # stdout at /dev/null so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as error:
        _error(f"{error.strerror or error}" + (f": {error.filename}" if error.filename else ""))
        return EXIT_FAILED
    except Exception as error:  # a bug: still one line, as promised, but say what it was
        _error(f"unexpected {type(error).__name__}: {error}")
        return EXIT_FAILED
    finally:
        logging.getLogger("conduit_async").removeHandler(log_handler)
