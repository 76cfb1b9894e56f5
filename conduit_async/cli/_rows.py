"""Reading provisioning input: CSV or JSON Lines, streamed, each row with its line number.

The file is never read into memory: lines are pulled one at a time as the
provisioning workers ask for rows. A row that cannot be understood becomes a
`BadRow` naming its line and the reason, so it is reported with the results
and every other row is still provisioned.

CSV records are one per line: a quoted field cannot span lines (use JSON
Lines for names with line breaks). That is what lets a broken quote cost one
row instead of swallowing the rest of the file. The delimiter is whichever of
`,` `;` or a tab makes the header a valid one (spreadsheets in many locales
save with `;`). The columns, and how each cell is read and checked, are the
row schema's (`provision._schema`), shared with the library and `--resume`.

A pipe (stdin, a FIFO) is read by a thread: a slow producer must never block
the event loop, which would stall the requests in flight (and their
timeouts) and the handling of Ctrl-C. The thread reads the raw descriptor,
not `sys.stdin.buffer`, whose lock a thread blocked in `read` would still
hold when the interpreter exits.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import os
import stat
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Literal

from ..errors import ValidationError
from ..provision import BadRow, CompanySpec, WorkspaceSpec
from ..provision._schema import SCHEMAS, Kind
from ._config import UsageError

__all__ = ["Format", "Kind", "Row", "RowSource"]

Format = Literal["csv", "jsonl"]
Row = CompanySpec | WorkspaceSpec | BadRow

_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: CSV delimiters tried on the header, in this order.
_DELIMITERS = (",", ";", "\t")
#: Longer than any valid row (1024-character id and name) by far; a longer line is
#: reported rather than held in memory.
MAX_LINE = 64 * 1024
#: Files up to this size are line-counted up front for the progress bar's total.
_COUNT_LIMIT = 1 << 30


class RowSource:
    """An input file opened for streaming; `rows()` yields specs and bad rows lazily.

    The format comes from `fmt`, else the extension, else the first line (a
    `{` means JSON Lines). A CSV header is read and checked at once, so a
    wrong file is a usage error before anything is sent.
    """

    def __init__(self, path: str, kind: Kind, fmt: Format | None = None) -> None:
        self.path = path
        self.kind = kind
        self._fd = _open(path)
        #: True for a pipe or terminal, whose reads may block for a long time.
        self.streaming = not stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._handoff: _ThreadedLines | None = None
        self._lines: Iterator[tuple[int, bytes | None]] = _numbered_lines(self._read)
        first = next(self._lines, None)
        if first is not None:
            self._lines = itertools.chain([first], self._lines)
        self.format: Format = (
            fmt
            or _EXTENSIONS.get(os.path.splitext(path)[1].lower())
            or (
                "jsonl"
                if first is not None and (first[1] or b"").lstrip().startswith(b"{")
                else "csv"
            )
        )
        self.schema = SCHEMAS[kind]
        self.columns: list[str] = []
        self.delimiter = ","
        self.header_lines = 0
        #: Rows read so far (bad ones too; blank lines are not rows).
        self.count = 0
        try:
            if first is None:
                raise UsageError(f"{self._name} is empty: nothing to provision")
            if self.format == "csv":
                self.columns = self._read_header()
        except UsageError:
            self.close()  # the caller never gets the object to close
            raise

    @property
    def _name(self) -> str:
        return "the standard input" if self.path == "-" else self.path

    def _read_header(self) -> list[str]:
        expected = ", ".join(self.schema.columns)
        for number, raw in self._lines:
            self.header_lines = number
            if raw is None:
                raise UsageError(f"{self.path}: line {number}: header line is too long")
            text = _decode(raw, number)
            if isinstance(text, BadRow):
                raise UsageError(f"{self.path}: line {number}: header is not UTF-8 text")
            if not text.strip():
                continue
            # The delimiter that makes a valid header wins; failing that, the problem is
            # told for the split with the most columns (the likeliest delimiter).
            best: tuple[int, str] = (0, "")
            for delimiter in _DELIMITERS:
                try:
                    columns = [c.strip().lower() for c in _csv_fields(text, delimiter)]
                except csv.Error as error:
                    best = max(best, (1, f"broken CSV header: {error}"), key=lambda b: b[0])
                    continue
                problem = self._header_problem(columns, expected)
                if problem is None:
                    self.delimiter = delimiter
                    return columns
                best = max(best, (len(columns), problem), key=lambda b: b[0])
            count, problem = best
            if count == 1 and not text.strip().replace("_", "").isalnum():
                problem += "; columns are separated by ',', ';' or a tab"
            raise UsageError(f"{self.path}: line {number}: {problem}")
        raise UsageError(f"{self._name} has no header row: nothing to provision")

    def _header_problem(self, columns: list[str], expected: str) -> str | None:
        """What is wrong with a header split into `columns`, or None if it is right."""
        for column in columns:
            if column not in self.schema.columns:
                return f"unknown column {column[:40]!r} in the header (expected {expected})"
        missing = [c for c in self.schema.required if c not in columns]
        if missing:
            return (
                f"the header row has no {missing[0]!r} column "
                f"(expected a header row with {expected})"
            )
        if len(set(columns)) != len(columns):
            return "a column is named twice"
        return None

    def estimate(self) -> int | None:
        """Rows in the file, counted cheaply by newlines (None for stdin or a huge file).

        An estimate for a progress bar: blank lines count too.
        """
        if self.path == "-":
            return None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        if not os.path.isfile(self.path) or info.st_size > _COUNT_LIMIT:
            return None
        lines = 0
        last = b"\n"
        with open(self.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        if last != b"\n":
            lines += 1
        return max(0, lines - self.header_lines)

    def _read(self, size: int) -> bytes:
        return os.read(self._fd, size)

    def rows(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Row]:
        """Every row after the header, with its line number; ends early once `stop()` is true.

        Reads in the calling thread: for regular files, or code that may block.
        An input that ends without a single row raises `UsageError`.
        """
        for number, raw in self._lines:
            if stop():
                return
            row = self._row(number, raw)
            if row is not None:
                self.count += 1
                yield row
        self._ended()

    async def arows(self, stop: Callable[[], bool] = lambda: False) -> AsyncGenerator[Row, None]:
        """`rows()` for the event loop: a pipe is read by a thread, so a slow producer
        never blocks the loop; `interrupt()` ends a wait for the next line at once."""
        if not self.streaming:
            for row in self.rows(stop):
                yield row
            return
        self._handoff = lines = _ThreadedLines(self._lines)
        try:
            while not stop():
                item = await lines.get()
                if item is None:
                    if not stop():
                        self._ended()
                    return
                parsed = self._row(*item)
                if parsed is not None:
                    self.count += 1
                    yield parsed
        finally:
            lines.close()

    def interrupt(self) -> None:
        """Wake `arows()` if it waits for input (call from the loop's thread)."""
        if self._handoff is not None:
            self._handoff.wake()

    def _ended(self) -> None:
        if not self.count:
            what = "only a header row" if self.columns else "no rows"
            raise UsageError(f"{self._name} holds {what}: nothing to provision")

    def _row(self, number: int, raw: bytes | None) -> Row | None:
        """One line as a checked spec or a bad row; None for a blank line."""
        if raw is None:
            return BadRow(ValidationError("row", f"longer than {MAX_LINE} bytes"), number)
        text = _decode(raw, number)
        if isinstance(text, BadRow):
            return text
        if not text.strip():
            return None
        if self.format == "csv":
            return self._csv_row(text, number)
        return self._json_row(text, number)

    def _csv_row(self, text: str, number: int) -> Row:
        try:
            fields = [f.strip() for f in _csv_fields(text, self.delimiter)]
        except csv.Error as error:
            return BadRow(ValidationError("csv", f"broken quoting: {error}"), number)
        columns = self.columns
        if len(fields) < len(columns) and all(
            c in self.schema.may_omit for c in columns[len(fields) :]
        ):
            fields += [""] * (len(columns) - len(fields))  # left off the end: not given
        if len(fields) != len(columns):
            detail = (
                f"missing {columns[len(fields)]!r}"
                if len(fields) < len(columns)
                else "more fields than columns"
            )
            return BadRow(
                ValidationError(
                    "columns",
                    f"{len(fields)} fields where the header has {len(columns)} ({detail})",
                ),
                number,
            )
        return self.schema.read_text(dict(zip(columns, fields, strict=True)), number)

    def _json_row(self, text: str, number: int) -> Row:
        try:
            data = json.loads(text)
        except ValueError as error:
            return BadRow(ValidationError("json", f"not valid JSON ({error})"), number)
        except RecursionError:
            return BadRow(ValidationError("json", "not valid JSON (nested too deeply)"), number)
        if not isinstance(data, dict):
            return BadRow(
                ValidationError("json", f"expected an object, not {type(data).__name__}"), number
            )
        return self.schema.read_json(data, number)

    def close(self) -> None:
        if self._handoff is not None:
            self._handoff.close()
        if self.path != "-":
            os.close(self._fd)


def _open(path: str) -> int:
    if path == "-":
        return sys.stdin.fileno()
    try:
        return os.open(path, os.O_RDONLY)  # closed by RowSource.close
    except OSError as error:
        raise UsageError(f"cannot read {path!r}: {error.strerror}") from None


def _numbered_lines(read: Callable[[int], bytes]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its end) for every line; None for a line over
    `MAX_LINE`, which is skipped without being kept."""
    number = 0
    pending = b""
    too_long = False
    while chunk := read(1 << 16):
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            number += 1
            if too_long or end - start > MAX_LINE:
                too_long = False
                yield number, None
            else:
                yield number, pending[start:end].rstrip(b"\r")
            start = end + 1
        pending = pending[start:]
        if len(pending) > MAX_LINE:
            too_long, pending = True, b""
    if too_long or pending:
        yield number + 1, None if too_long else pending.rstrip(b"\r")


class _ThreadedLines:
    """Lines read by a daemon thread and handed to the event loop, at most `capacity`
    ahead of the consumer (a fast producer must not fill memory)."""

    _EOF = None

    def __init__(self, lines: Iterator[tuple[int, bytes | None]], capacity: int = 1024) -> None:
        self._lines = lines
        self._room = threading.Semaphore(capacity)
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[int, bytes | None] | BaseException | None] = (
            asyncio.Queue()
        )
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="conduit-async-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._lines:
                self._room.acquire()
                if self._closed:
                    return
                self._send(item)
        except Exception as error:  # a read error: raised on the loop's side
            self._send(error)
        self._send(None)

    def _send(self, item: tuple[int, bytes | None] | BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            self._closed = True  # the loop is gone: nobody is reading any more

    async def get(self) -> tuple[int, bytes | None] | None:
        """The next line, or None at the end of input (or after `wake()`)."""
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is not None:
            self._room.release()
        return item

    def wake(self) -> None:
        self._queue.put_nowait(None)

    def close(self) -> None:
        """Let the thread end at its next line (it may be blocked reading: it is a daemon)."""
        self._closed = True
        self._room.release()


def _decode(raw: bytes, number: int) -> str | BadRow:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return BadRow(ValidationError("encoding", f"not UTF-8 (byte {error.start + 1})"), number)
    return text.removeprefix("\ufeff") if number == 1 else text


def _csv_fields(text: str, delimiter: str = ",") -> list[str]:
    return next(csv.reader([text], delimiter=delimiter, strict=True, skipinitialspace=True), [])
