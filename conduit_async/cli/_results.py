"""The results file: one JSON line per finished row, flushed as it is written, and resume.

Flushed per row because the file is the record of what was done: after
Ctrl-C, a crash or a kill, every row reported in it is really finished, and
`--resume` trusts it to skip those rows, unless the row's fields changed
since (each result line carries the row's fingerprint). Results carry no
tokens (`to_dict` strips them).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Protocol, TextIO

from ..provision._keys import KeyTable
from ..provision._schema import SCHEMAS, Kind
from ._config import UsageError

__all__ = ["Done", "ResultsWriter", "read_done"]

_SUCCESS = frozenset({"created", "updated", "unchanged"})
#: Stands for "no fingerprint": a result line written by 0.1.0.
_ANY = 0


class _Result(Protocol):
    def to_dict(self) -> dict[str, object]: ...


class ResultsWriter:
    """Appends result lines to `path` (`-` for stdout), or to nothing when `path` is None."""

    def __init__(self, path: str | None, *, append: bool) -> None:
        self.path = path
        self._file: TextIO | None = None
        if path == "-":
            self._file = sys.stdout
        elif path is not None:
            try:
                self._file = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
            except OSError as error:
                raise UsageError(f"cannot write {path!r}: {error.strerror}") from None
            if append and self._file.tell() > 0 and not _ends_with_newline(path):
                self._file.write("\n")  # a run killed mid-line left half a line: close it

    @property
    def to_stdout(self) -> bool:
        return self.path == "-"

    def write(self, result: _Result) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class Done:
    """The rows a results file records as done: identity key -> fingerprint of the fields.

    Kept compact (`KeyTable`: no key strings, about 32 bytes a row), since a
    results file may hold millions of rows. A 64-bit hash shared by two keys
    cannot skip a row wrongly: the fingerprint must match too.
    """

    def __init__(self) -> None:
        self._table = KeyTable()

    def __len__(self) -> int:
        return len(self._table)

    def add(self, key: str, fingerprint: str | None) -> None:
        """Record a finished row (`fingerprint` None for a 0.1.0 line); a later line for
        the same key wins, as it is the later run's."""
        self._table.put(key, _ANY if fingerprint is None else _as_int(fingerprint))

    def has(self, key: str, fingerprint: str) -> bool:
        """Whether the row was done with these same fields (or by 0.1.0, which kept none)."""
        found = self._table.get(key)
        return found is not None and found in (_ANY, _as_int(fingerprint))

    def knows(self, key: str) -> bool:
        """Whether a row with this key was done at all, whatever its fields."""
        return self._table.get(key) is not None


def _as_int(fingerprint: str) -> int:
    """A fingerprint (16 hex digits) as a signed 64-bit int; never `_ANY`."""
    value = int(fingerprint, 16)
    if value >= 1 << 63:
        value -= 1 << 64
    return value or 1


def read_done(path: str, kind: Kind) -> Done:
    """The rows a results file records as done (any outcome but `failed`), by identity key
    (company ids lower-cased, as the API compares them), with their fingerprints.

    A missing file is an empty record (so scripts can always pass `--resume`);
    a line cut short by a killed run is ignored, since its row is simply done
    again. Lines written by 0.1.0 carry no fingerprint: their rows count as
    done whatever their fields, as 0.1.0 resumed them.
    """
    schema = SCHEMAS[kind]
    field = schema.key_field
    done = Done()
    try:
        handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except FileNotFoundError:
        return done
    except OSError as error:
        raise UsageError(f"cannot read {path!r}: {error.strerror}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("outcome"), str):
                raise UsageError(f"{path}: line {number} is not a provisioning result")
            key = record.get(field)
            if not isinstance(key, str):
                raise UsageError(
                    f"{path}: line {number} has no {field!r}: not a results file of "
                    f"'provision {kind}'"
                )
            if record["outcome"] not in _SUCCESS:
                continue
            fingerprint = record.get("fingerprint", _LEGACY)
            if fingerprint is _LEGACY:
                done.add(schema.identity(key), None)
            elif isinstance(fingerprint, str) and _is_hex(fingerprint):
                done.add(schema.identity(key), fingerprint)
            # else: a fingerprint we cannot read proves nothing; the row is done again
    return done


_LEGACY = object()


def _is_hex(text: str) -> bool:
    return 0 < len(text) <= 16 and all(c in "0123456789abcdef" for c in text)
