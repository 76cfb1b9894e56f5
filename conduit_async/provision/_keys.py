"""A compact map from row keys to one 64-bit number each, for inputs of millions of rows.

Provisioning streams its input in bounded memory, but two jobs must remember
every key they have met: refusing a second row with the same key in one
input ("duplicate of line N"), and `--resume` knowing which rows an earlier
run finished. A `dict[str, int]` costs about 100 bytes a key plus the key
itself; this table keeps no key at all, only its 64-bit hash and the value,
in two flat arrays: 16 bytes a slot, at most 3/4 full, so 21 to 43 bytes a
key (and twice the old size for a moment while it grows).

Two different keys share a 64-bit hash with a probability of about n^2 / 2^65
(one in 37 million for a million keys): `hash()` of a str is keyed SipHash,
salted per process, so no input can aim for it. Callers say what a
collision would mean for them.
"""

from __future__ import annotations

from itertools import compress

from ..errors import ValidationError

__all__ = ["Duplicates", "KeyTable"]

_FIRST_SIZE = 1 << 10


def _slots(size: int) -> memoryview:
    """`size` zeroed signed 64-bit slots (a memoryview indexes faster than an array)."""
    return memoryview(bytearray(8 * size)).cast("q")


class KeyTable:
    """str -> int (64-bit signed); open addressing with linear probing, no deletion."""

    __slots__ = ("_count", "_hashes", "_limit", "_mask", "_values")

    def __init__(self) -> None:
        self._hashes = _slots(_FIRST_SIZE)  # 0 marks an empty slot
        self._values = _slots(_FIRST_SIZE)
        self._mask = _FIRST_SIZE - 1
        self._limit = _FIRST_SIZE * 3 // 4  # more keys than this: grow
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get(self, key: str) -> int | None:
        """The value stored for `key`, or None."""
        digest = hash(key) or 1
        hashes, mask = self._hashes, self._mask
        slot = digest & mask
        while found := hashes[slot]:
            if found == digest:
                return self._values[slot]
            slot = (slot + 1) & mask
        return None

    def setdefault(self, key: str, value: int) -> int | None:
        """Store `value` for `key` unless it has one: None then, else the value already there."""
        digest = hash(key) or 1
        hashes, mask = self._hashes, self._mask
        slot = digest & mask
        while found := hashes[slot]:
            if found == digest:
                return self._values[slot]
            slot = (slot + 1) & mask
        hashes[slot] = digest
        self._values[slot] = value
        self._count += 1
        if self._count > self._limit:
            self._grow()
        return None

    def put(self, key: str, value: int) -> None:
        """Store `value` for `key`, replacing any value it had."""
        digest = hash(key) or 1
        hashes, mask = self._hashes, self._mask
        slot = digest & mask
        while found := hashes[slot]:
            if found == digest:
                self._values[slot] = value
                return
            slot = (slot + 1) & mask
        self.setdefault(key, value)

    def _grow(self) -> None:
        old_hashes, old_values = self._hashes, self._values
        size = 2 * len(old_hashes)
        hashes = _slots(size)
        values = _slots(size)
        mask = size - 1
        for old in compress(range(len(old_hashes)), old_hashes):  # the used slots only
            digest = old_hashes[old]
            slot = digest & mask
            while hashes[slot]:
                slot = (slot + 1) & mask
            hashes[slot] = digest
            values[slot] = old_values[old]
        self._hashes, self._values, self._mask = hashes, values, mask
        self._limit = size * 3 // 4


class Duplicates:
    """Where each key of one input was first met, so that a second row with the same key
    is refused instead of racing the first (which one won would depend on timing).

    A hash collision would refuse a row that is not a duplicate: it is reported,
    never applied wrongly. Positions are kept as line numbers, or as row numbers
    (stored negated) for rows that came with no line.
    """

    __slots__ = ("_column", "_first")

    def __init__(self, column: str) -> None:
        self._first = KeyTable()
        self._column = column

    def check(self, key: str, line: int | None, row: int) -> ValidationError | None:
        """None the first time `key` is met; else the error for this row, naming the first."""
        # A line that is not a plain positive int (a caller's spec may hold anything) is
        # not kept: the row is named by its number instead.
        at = line if type(line) is int and 0 < line < 1 << 62 else -row
        first = self._first.setdefault(key, at)
        if first is None:
            return None
        where = f"line {first}" if first > 0 else f"row {-first}"
        return ValidationError(self._column, f"duplicate of {where}")
