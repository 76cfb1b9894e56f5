"""Reading provisioning input: CSV or JSON Lines, streamed, each row with its line number.

The file is never read into memory: lines are pulled one at a time as the
provisioning workers ask for rows. A row that cannot be understood becomes a
`BadRow` naming its line and the reason, so it is reported with the results
and every other row is still provisioned.

CSV records are one per line: a quoted field cannot span lines (use JSON
Lines for names with line breaks). That is what lets a broken quote cost one
row instead of swallowing the rest of the file.

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
from ..provision._companies import company_spec
from ..provision._workspaces import workspace_spec
from ._config import UsageError

__all__ = ["Format", "Kind", "Row", "RowSource", "parse_flag"]

Kind = Literal["companies", "workspaces"]
Format = Literal["csv", "jsonl"]
Row = CompanySpec | WorkspaceSpec | BadRow

#: Columns per kind: (required, optional).
COLUMNS: dict[Kind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "companies": (("id",), ("name", "page_enabled")),
    "workspaces": (("name", "ext_id"), ()),
}
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
#: Longer than any valid row (1024-character id and name) by far; a longer line is
#: reported rather than held in memory.
MAX_LINE = 64 * 1024
#: Files up to this size are line-counted up front for the progress bar's total.
_COUNT_LIMIT = 1 << 30


def parse_flag(value: object, column: str = "page_enabled") -> bool | None:
    """A boolean cell: true/false, yes/no, 1/0 (any case), or empty/null for "not given"."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    shown = value if isinstance(value, (str, int, float)) else type(value).__name__
    raise ValidationError(column, f"must be true/false, yes/no or 1/0, not {shown!r}")


def _text(value: object, column: str) -> str | None:
    """A text cell from JSON: a string, a whole number (ids are often numeric), or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValidationError(column, f"must be a string, not {type(value).__name__}")


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
        self.columns: list[str] = []
        self.header_lines = 0
        if self.format == "csv" and first is not None:
            self.columns = self._read_header()

    def _read_header(self) -> list[str]:
        required, optional = COLUMNS[self.kind]
        expected = ", ".join(required + optional)
        for number, raw in self._lines:
            self.header_lines = number
            if raw is None:
                raise UsageError(f"{self.path}: line {number}: header line is too long")
            text = _decode(raw, number)
            if isinstance(text, BadRow):
                raise UsageError(f"{self.path}: line {number}: header is not UTF-8 text")
            if not text.strip():
                continue
            try:
                columns = [c.strip().lower() for c in _csv_fields(text)]
            except csv.Error as error:
                raise UsageError(
                    f"{self.path}: line {number}: broken CSV header: {error}"
                ) from None
            for column in columns:
                if column not in required + optional:
                    raise UsageError(
                        f"{self.path}: line {number}: unknown column {column[:40]!r} in the "
                        f"header (expected {expected})"
                    )
            missing = [c for c in required if c not in columns]
            if missing:
                raise UsageError(
                    f"{self.path}: line {number}: the header row has no {missing[0]!r} column "
                    f"(expected a header row with {expected})"
                )
            if len(set(columns)) != len(columns):
                raise UsageError(f"{self.path}: line {number}: a column is named twice")
            return columns
        return []

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
        """
        for number, raw in self._lines:
            if stop():
                return
            row = self._row(number, raw)
            if row is not None:
                yield row

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
                    return
                parsed = self._row(*item)
                if parsed is not None:
                    yield parsed
        finally:
            lines.close()

    def interrupt(self) -> None:
        """Wake `arows()` if it waits for input (call from the loop's thread)."""
        if self._handoff is not None:
            self._handoff.wake()

    def _row(self, number: int, raw: bytes | None) -> Row | None:
        """One line as a checked spec or a bad row; None for a blank line."""
        if raw is None:
            return BadRow(ValidationError("row", f"longer than {MAX_LINE} bytes"), number)
        text = _decode(raw, number)
        if isinstance(text, BadRow):
            return text
        if not text.strip():
            return None
        try:
            row = (
                self._csv_row(text, number)
                if self.format == "csv"
                else self._json_row(text, number)
            )
        except ValidationError as error:
            return BadRow(error, number)
        return company_spec(row) if self.kind == "companies" else workspace_spec(row)

    def _csv_row(self, text: str, number: int) -> Row:
        try:
            fields = [f.strip() for f in _csv_fields(text)]
        except csv.Error as error:
            raise ValidationError("csv", f"broken quoting: {error}") from None
        columns = self.columns
        if len(fields) != len(columns):
            detail = (
                f"missing {columns[len(fields)]!r}"
                if len(fields) < len(columns)
                else "more fields than columns"
            )
            raise ValidationError(
                "columns", f"{len(fields)} fields where the header has {len(columns)} ({detail})"
            )
        cells = dict(zip(columns, fields, strict=True))
        if self.kind == "workspaces":
            return WorkspaceSpec(cells["name"], cells["ext_id"], line=number)
        try:
            flag = parse_flag(cells.get("page_enabled"))
        except ValidationError as error:
            return BadRow(error, number, cells["id"])
        return CompanySpec(cells["id"], cells.get("name") or None, flag, line=number)

    def _json_row(self, text: str, number: int) -> Row:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValidationError("json", f"not valid JSON ({error})") from None
        except RecursionError:
            raise ValidationError("json", "not valid JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise ValidationError("json", f"expected an object, not {type(data).__name__}")
        required, optional = COLUMNS[self.kind]
        for key in data:
            if key not in required + optional:
                raise ValidationError(
                    str(key)[:40], f"unknown field (expected {', '.join(required + optional)})"
                )
        for key in required:
            if key not in data:
                raise ValidationError(key, "is required")
        if self.kind == "workspaces":
            ext_id = _text(data["ext_id"], "ext_id")
            try:
                name = _text(data["name"], "name")
            except ValidationError as error:
                return BadRow(error, number, ext_id or "")
            return WorkspaceSpec(name, ext_id, line=number)  # type: ignore[arg-type]
        cid = _text(data["id"], "id")
        if cid is None:
            raise ValidationError("id", "is required")
        try:
            spec = CompanySpec(
                cid,
                _text(data.get("name"), "name"),
                parse_flag(data.get("page_enabled")),
                line=number,
            )
        except ValidationError as error:
            return BadRow(error, number, cid)
        return spec

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


def _csv_fields(text: str) -> list[str]:
    return next(csv.reader([text], strict=True, skipinitialspace=True), [])
