"""`conduit-async provision companies|workspaces FILE`: the bulk job, interruptible and resumable.

Ctrl-C (or SIGTERM) stops the reading of rows; the rows already in flight
finish and are recorded, then the command says how to resume and exits 130.
A second Ctrl-C abandons the rows in flight (their requests are cancelled;
`--resume` does them again, safely, since provisioning ensures rather than
creates).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import signal
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import TextIO

from ..client import Conduit
from ..provision import BadRow, CompanyResult, WorkspaceResult
from ..provision._keys import Duplicates
from ..provision._schema import SCHEMAS
from ._config import UsageError, make_client
from ._progress import Progress, Tally, make_progress
from ._results import Done, ResultsWriter, read_done
from ._rows import Kind, Row, RowSource

__all__ = ["DEFAULT_CONCURRENCY", "provision_command"]

DEFAULT_CONCURRENCY = 64

#: Global option defaults, left out of the resume command line.
DEFAULTS: dict[str, object] = {"timeout": 30.0}

EXIT_INTERRUPTED = 130


class _Stop:
    """The first signal asks for a graceful stop; the second abandons what is in flight."""

    def __init__(self, progress: Progress, source: RowSource) -> None:
        self.requested = False
        self.progress = progress
        self.source = source
        self.abandon: Callable[[], object] = lambda: None

    def __call__(self) -> None:
        if not self.requested:
            self.requested = True
            self.source.interrupt()  # a wait for the next line from a pipe ends now
            self.progress.message(
                "Stopping: no new rows; finishing the rows in flight "
                "(press Ctrl-C again to abandon them)"
            )
        else:
            self.progress.message("Abandoning the rows in flight")
            self.abandon()


@contextlib.contextmanager
def _signals(handler: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `handler` while the batch runs (where asyncio can)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or a platform without it: Ctrl-C stays an exception
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _skip_done(
    rows: AsyncIterator[Row], done: Done, kind: Kind, tally: Tally, progress: Progress
) -> AsyncGenerator[Row, None]:
    """Leave out rows an earlier run finished with the same fields (`--resume`), counting
    them; a row whose fields changed since is provisioned again.

    The engine refuses a second row with the same key, but never sees a skipped
    one: so a later row whose key was done is refused here, naming the first.
    """
    if not done:
        async for row in rows:
            yield row
        return
    schema = SCHEMAS[kind]
    met = Duplicates(schema.key_field)  # only keys the results file knows: bounded by it
    number = 0
    async for row in rows:
        number += 1
        if not isinstance(row, BadRow):
            key = schema.key(row)  # type: ignore[arg-type]
            if done.knows(key):
                duplicate = met.check(key, row.line, number)
                if duplicate is not None:
                    key_as_given = getattr(row, schema.key_field)
                    yield BadRow(duplicate, row.line, key_as_given, row.name or "")
                    continue
                if done.has(key, schema.fingerprint(row)):  # type: ignore[arg-type]
                    tally.skipped += 1
                    progress.advance(tally)
                    continue
        yield row


def _results(
    conduit: Conduit,
    kind: Kind,
    rows: AsyncIterator[Row],
    args: argparse.Namespace,
    concurrency: int,
) -> AsyncGenerator[CompanyResult, None] | AsyncGenerator[WorkspaceResult, None]:
    if kind == "companies":
        return conduit.companies.provision(rows, concurrency=concurrency)  # type: ignore[arg-type]
    return conduit.workspaces.provision(
        rows,  # type: ignore[arg-type]
        clone_dashboards=args.clone_dashboard or (),
        concurrency=concurrency,
    )


async def provision_command(args: argparse.Namespace) -> int:
    """Run one batch; the exit status is 0 if every row succeeded, 1 if any failed, 130 if
    interrupted."""
    kind: Kind = args.kind
    concurrency: int = args.concurrency or DEFAULT_CONCURRENCY
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.resume == "-":
        raise UsageError("--resume needs a results file, not '-'")
    if args.resume and args.out and args.out != args.resume:
        raise UsageError("--resume appends to its own file: give --out only without --resume")
    conduit = make_client(
        args, "link" if kind == "companies" else "org", max_connections=concurrency
    )
    done = read_done(args.resume, kind) if args.resume else Done()
    out_path: str | None = args.resume or args.out
    label = f"provision {kind}"
    tally = Tally()
    with contextlib.ExitStack() as cleanup:
        source = RowSource(args.file, kind, args.format)
        cleanup.callback(source.close)
        writer = ResultsWriter(out_path, append=bool(args.resume))
        cleanup.callback(writer.close)
        progress = make_progress(source.estimate(), label, quiet=args.quiet)
        cleanup.callback(progress.close)
        cleanup.callback(tally.finish)
        stop = _Stop(progress, source)
        rows = _skip_done(source.arows(lambda: stop.requested), done, kind, tally, progress)

        async def consume() -> None:
            results = _results(conduit, kind, rows, args, concurrency)
            # Results first (its workers are cancelled), then the reader (its thread ends).
            async with contextlib.aclosing(rows), contextlib.aclosing(results):
                async for result in results:
                    writer.write(result)
                    tally.add(result)
                    progress.advance(tally)

        async with conduit:
            task = asyncio.get_running_loop().create_task(consume())
            stop.abandon = task.cancel
            with _signals(stop):
                try:
                    await task
                except asyncio.CancelledError:
                    if not task.cancelled():
                        raise  # we are being cancelled ourselves, not abandoning the batch
    summary_to = sys.stderr if writer.to_stdout else sys.stdout
    _print_summary(args, tally, label, summary_to, interrupted=stop.requested)
    if stop.requested:
        print(_resume_hint(args, out_path, tally), file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if tally.failed else 0


def _print_summary(
    args: argparse.Namespace, tally: Tally, label: str, stream: TextIO, *, interrupted: bool
) -> None:
    if args.json:
        data = {"command": label, "interrupted": interrupted, **tally.to_json()}
        if args.resume or args.out:
            data["results_file"] = args.resume or args.out
        print(json.dumps(data), file=stream)
    else:
        print("\n".join(tally.summary(label)), file=stream)


def _resume_hint(args: argparse.Namespace, out_path: str | None, tally: Tally) -> str:
    finished = f"Interrupted after {tally.done:,} rows"
    if out_path is None or out_path == "-":
        return (
            f"{finished}; no results file was kept (--out FILE). Running the same command "
            "again is safe: rows already done are reported unchanged, none is created twice."
        )
    words = ["conduit-async"]
    for option in ("base_url", "link_base_url", "token_file", "timeout"):
        value = getattr(args, option, None)
        if value is not None and value != DEFAULTS.get(option):
            words += ["--" + option.replace("_", "-"), str(value)]
    if getattr(args, "allow_insecure", False):
        words.append("--allow-insecure")
    words += ["provision", args.kind, args.file]
    if args.concurrency:
        words += ["--concurrency", str(args.concurrency)]
    if args.kind == "workspaces":
        for dashboard in args.clone_dashboard or ():
            words += ["--clone-dashboard", str(dashboard)]
    if args.format:
        words += ["--format", args.format]
    words += ["--resume", out_path]
    return (
        f"{finished}; every finished row is recorded in {out_path}.\n"
        f"Resume with: {shlex.join(words)}"
    )
