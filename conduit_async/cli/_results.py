"""The results file: one JSON line per finished row, flushed as it is written, and resume.

Flushed per row because the file is the record of what was done: after
Ctrl-C, a crash or a kill, every row reported in it is really finished, and
`--resume` trusts it to skip those rows. Results carry no tokens (`to_dict`
strips them).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Protocol, TextIO

from ._config import UsageError
from ._rows import Kind

__all__ = ["ResultsWriter", "read_done"]

#: The field that identifies a row in each kind's results.
KEY_FIELD: dict[Kind, str] = {"companies": "id", "workspaces": "ext_id"}
_SUCCESS = frozenset({"created", "updated", "unchanged"})


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


def read_done(path: str, kind: Kind) -> set[str]:
    """The keys of rows a results file records as done (any outcome but `failed`).

    Company ids are lower-cased, as the API compares them. A missing file is
    an empty record (so scripts can always pass `--resume`); a line cut short
    by a killed run is ignored, since its row is simply done again.
    """
    field = KEY_FIELD[kind]
    done: set[str] = set()
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
            if record["outcome"] in _SUCCESS:
                done.add(key.lower() if kind == "companies" else key)
    return done
