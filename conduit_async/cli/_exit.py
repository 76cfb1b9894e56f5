"""How `conduit-async` ends: its exit statuses, declared once, and how an error is told."""

from __future__ import annotations

import json
import sys

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "describe", "report_error"]

#: Everything asked was done.
EXIT_OK = 0
#: A row or a request failed (the others were still done).
EXIT_FAILED = 1
#: The command line, its configuration or a file it names is wrong: nothing was sent.
EXIT_USAGE = 2
#: Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def describe() -> str:
    """The `exit status:` paragraph of `--help`."""
    return (
        f"exit status: {EXIT_OK} success, {EXIT_FAILED} a row or request failed, "
        f"{EXIT_USAGE} usage or configuration error,\n{EXIT_INTERRUPTED} interrupted"
    )


def report_error(
    kind: str, message: str, *, as_json: bool, status: int | None = None, prefix: bool = True
) -> None:
    """Tell why the command failed, on stderr: one line for a person, or with `--json` one
    object `{"error": {"type", "status", "message"}}` (`status` only for an HTTP error).

    `kind` is the error's type name; `prefix=False` prints a person's message as it is
    (several lines, such as how to resume).
    """
    if as_json:
        error: dict[str, object] = {"type": kind}
        if status is not None:
            error["status"] = status
        error["message"] = message
        print(json.dumps({"error": error}, ensure_ascii=False), file=sys.stderr, flush=True)
    else:
        print(
            f"conduit-async: error: {message}" if prefix else message, file=sys.stderr, flush=True
        )
