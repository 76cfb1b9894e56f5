"""JSON in and out of request bodies: orjson when installed, the standard library otherwise.

orjson (the `speed` extra) encodes and decodes several times faster, which is
a visible share of a request's client-side work. It refuses a few things the
standard library accepts (NaN, documents nested past its limit, text that is
not UTF-8); each of those falls back to the standard library, so what is
accepted and refused does not depend on the extra. One difference remains:
orjson reads an integer past 64 bits as a float (no Conduit id comes near).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads"]

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _std_dumps(value: Any) -> bytes:
    return _encode(value).encode()


try:
    import orjson
except ImportError:  # pragma: no cover - exercised by the CI runs without the extra
    dumps = _std_dumps
    loads = json.loads
else:
    _orjson_dumps = orjson.dumps
    _orjson_loads = orjson.loads
    _OrjsonError = orjson.JSONDecodeError

    def dumps(value: Any) -> bytes:
        try:
            return _orjson_dumps(value)
        except TypeError:  # e.g. an integer past 64 bits
            return _std_dumps(value)

    def loads(data: bytes) -> Any:  # type: ignore[misc]
        try:
            return _orjson_loads(data)
        except _OrjsonError:  # NaN, huge integers, deep nesting, UTF-16: the stdlib decides
            return json.loads(data)
