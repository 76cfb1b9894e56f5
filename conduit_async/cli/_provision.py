"""`conduit-async provision companies|workspaces FILE`: the bulk job, interruptible and resumable.

Ctrl-C (or SIGTERM) is honoured at any moment. Before the first row is sent
(reading a long `--resume` file, waiting for the first line of a pipe) it
stops at once. During the batch it stops the reading of rows; the rows
already in flight finish and are recorded. Either way the command says how
to resume and exits 130. A second Ctrl-C abandons the rows in flight (their
requests are cancelled; `--resume` does them again, safely, since
provisioning ensures rather than creates).

The slow preparations run in daemon threads, so that the event loop is free
to take the signal and the process can exit without waiting for a read that
may never return.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TextIO, TypeVar

from ..client import DEFAULT_TIMEOUT, Conduit
from ..provision import BadRow, CompanyResult, WorkspaceResult
from ..provision._keys import Duplicates
from ..provision._pool import COMPANY_CONCURRENCY
from ..provision._schema import SCHEMAS
from ..stats import Stats
from ._config import UsageError, make_client
from ._exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, report_error
from ._progress import Progress, Tally, counted, make_progress
from ._results import Done, ResultsWriter, read_done
from ._rows import Kind, Row, RowSource

__all__ = ["DEFAULT_CONCURRENCY", "provision_command"]

DEFAULT_CONCURRENCY = COMPANY_CONCURRENCY

#: Global option defaults, left out of the resume command line.
DEFAULTS: dict[str, object] = {"timeout": DEFAULT_TIMEOUT}

T = TypeVar("T")


class Interrupted(Exception):
    """A signal stopped the command before its batch began."""


class _Stop:
    """SIGINT and SIGTERM, for the whole command.

    A signal cancels the task being guarded: at once during the preparation
    (nothing is in flight then); during the batch, the first signal only runs
    `graceful` (no new rows) and the second cancels. `requested` says whether
    any signal came; `abandoned` whether a cancellation was ours, rather than
    one from outside.
    """

    def __init__(self) -> None:
        self.requested = False
        self.abandoned = False
        self._task: asyncio.Future[Any] | None = None
        self._graceful: Callable[[], None] | None = None
        self._on_abandon: Callable[[], None] | None = None

    def __call__(self) -> None:
        first = not self.requested
        self.requested = True
        if first and self._graceful is not None:
            self._graceful()
        elif self._task is not None and not self._task.done():
            self.abandoned = True
            if self._on_abandon is not None:
                self._on_abandon()
            self._task.cancel()

    async def guard(
        self,
        task: asyncio.Future[T],
        *,
        graceful: Callable[[], None] | None = None,
        on_abandon: Callable[[], None] | None = None,
    ) -> T:
        """Await `task`, which a signal cancels; `Interrupted` if a signal came before
        or during it. With `graceful`, the first signal calls that instead."""
        if self.requested:
            task.cancel()
            raise Interrupted
        self._task, self._graceful, self._on_abandon = task, graceful, on_abandon
        try:
            return await task
        except asyncio.CancelledError:
            if not self.abandoned:
                raise  # cancelled from outside: not ours to swallow
            raise Interrupted from None
        finally:
            self._task = self._graceful = self._on_abandon = None


def in_thread(work: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run blocking `work` in a daemon thread; its result as a future of this loop.

    Not the loop's executor: its threads are joined when `asyncio.run` ends,
    so a read that never returns (a pipe nobody writes to) would hold up the
    exit after Ctrl-C. Cancelling the future abandons the thread.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # cancelled meanwhile: the result is nobody's
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as caught:  # handed to the waiter, raised there
            error = caught
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


@contextlib.contextmanager
def _signals(handler: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `handler` (where asyncio can)."""
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


def refuse_input_as_output(args: argparse.Namespace) -> None:
    """A results file that is the input file would truncate it and read itself back as
    rows, without end: refuse it before anything is opened for writing."""
    if args.file == "-":
        return
    for option in ("out", "resume"):
        path = getattr(args, option)
        if path is not None and path != "-" and _same_file(path, args.file):
            raise UsageError(
                f"--{option} {path!r} is the input file: the results would overwrite the "
                "rows being read. Give another file for the results"
            )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # the same inode, whatever the paths (hard links too)
    except OSError:  # one does not exist (yet): compare where the paths lead
        return os.path.realpath(a) == os.path.realpath(b)


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


def _prepare(args: argparse.Namespace, kind: Kind) -> tuple[Done, RowSource, int | None]:
    """The slow start, run in a thread: what `--resume` records as done, the input
    opened (its header read: a pipe may take its time) and its rows estimated."""
    done = read_done(args.resume, kind) if args.resume else Done()
    source = RowSource(args.file, kind, args.format)
    try:
        return done, source, source.estimate()
    except BaseException:
        source.close()
        raise


def _to_do(estimate: int | None, done: Done) -> int | None:
    """Rows this run is expected to do: the input's estimate less those done earlier."""
    return None if estimate is None else max(0, estimate - len(done))


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
    refuse_input_as_output(args)
    conduit = make_client(
        args, "link" if kind == "companies" else "org", max_connections=concurrency
    )
    out_path: str | None = args.resume or args.out
    label = f"provision {kind}"
    tally = Tally()
    stop = _Stop()
    writer: ResultsWriter | None = None
    with _signals(stop), contextlib.ExitStack() as cleanup:
        try:
            async with conduit:
                done, source, estimate = await stop.guard(
                    in_thread(lambda: _prepare(args, kind), "conduit-async-prepare")
                )
                cleanup.callback(source.close)
                writer = ResultsWriter(out_path, append=bool(args.resume))
                cleanup.callback(writer.close)
                await _run_batch(
                    conduit, args, concurrency, source, done, estimate, writer, tally, stop
                )
        except Interrupted:
            pass  # said below, with how to resume
        except asyncio.CancelledError:
            # asyncio's own Ctrl-C handling, in the moment before ours was installed
            stop.requested = True
    tally.finish()  # if the batch never began
    summary_to = sys.stderr if writer is not None and writer.to_stdout else sys.stdout
    _print_summary(args, tally, label, summary_to, interrupted=stop.requested)
    if getattr(args, "verbose", False):
        print_stats(conduit.stats(), summary_to, as_json=args.json)
    if stop.requested:
        hint = _resume_hint(args, out_path, tally)
        report_error("Interrupted", hint, as_json=args.json, prefix=False)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed else EXIT_OK


async def _run_batch(
    conduit: Conduit,
    args: argparse.Namespace,
    concurrency: int,
    source: RowSource,
    done: Done,
    estimate: int | None,
    writer: ResultsWriter,
    tally: Tally,
    stop: _Stop,
) -> None:
    """Provision every row not done yet, recording each result as it comes."""
    kind: Kind = args.kind
    progress = make_progress(
        _to_do(estimate, done), f"provision {kind}", quiet=args.quiet, machine=args.json
    )
    rows_in = _skip_done(source.arows(lambda: stop.requested), done, kind, tally, progress)

    async def consume() -> None:
        results = _results(conduit, kind, rows_in, args, concurrency)
        # Results first (its workers are cancelled), then the reader (its thread ends).
        async with contextlib.aclosing(rows_in), contextlib.aclosing(results):
            async for result in results:
                writer.write(result)
                tally.add(result)
                progress.advance(tally)

    def graceful() -> None:
        source.interrupt()  # a wait for the next line from a pipe ends now
        progress.message(
            "Stopping: no new rows; finishing the rows in flight "
            "(press Ctrl-C again to abandon them)"
        )

    try:
        await stop.guard(
            asyncio.ensure_future(consume()),
            graceful=graceful,
            on_abandon=lambda: progress.message("Abandoning the rows in flight"),
        )
    except Interrupted:
        progress.close(tally)
        raise
    except BaseException:
        progress.close(None)
        raise
    finally:
        tally.finish()
    progress.close(tally, complete=not stop.requested)


def print_stats(stats: Stats, stream: TextIO, *, as_json: bool) -> None:
    """The client's counters (`--verbose`): what it took to get the rows done."""
    if as_json:
        print(json.dumps({"stats": stats.to_dict()}), file=stream)
        return
    lines = [f"Requests sent: {stats.requests_sent}"]
    for endpoint, by_status in sorted(stats.requests.items()):
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(by_status.items()))
        lines.append(f"  {endpoint}  {counts}")
    retries = ", ".join(f"{cause}: {n}" for cause, n in sorted(stats.retries.items()))
    lines.append(f"Retries: {retries or 'none'}")
    lines.append(f"429 pauses: {stats.pauses} ({stats.paused_seconds:.1f} s)")
    lines.append(
        f"Company tokens: {stats.token_fetches} fetched, {stats.cache_hits} cache hits, "
        f"{stats.cache_misses} misses, {stats.background_refreshes} background refreshes "
        f"({stats.refresh_failures} failed); workspace lookups: {stats.workspace_lookups}"
    )
    print("\n".join(lines), file=stream)


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
    finished = f"Interrupted after {counted(tally.done, 'row')}"
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
