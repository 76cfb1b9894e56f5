"""JSON bodies: orjson when installed, the standard library otherwise, accepting and
refusing the same documents either way."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

import conduit_async._json


@pytest.fixture(params=["orjson", "stdlib"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    if request.param == "stdlib":
        monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson -> ImportError
    else:
        pytest.importorskip("orjson")
    module = importlib.reload(conduit_async._json)
    yield module
    monkeypatch.undo()
    importlib.reload(conduit_async._json)


DOCUMENTS = [
    b'{"id": "acme1", "name": "\xc3\x9cn\xc3\xafcode", "n": 1}',
    b"[1, 2.5, true, null]",
    b'{"x": NaN}',  # not JSON, but what the stdlib has always read
    "[1]".encode("utf-16"),  # the stdlib detects UTF-16 and UTF-32
]


@pytest.mark.parametrize("raw", DOCUMENTS)
def test_both_codecs_read_the_same(codec: ModuleType, raw: bytes) -> None:
    assert repr(codec.loads(raw)) == repr(json.loads(raw))


@pytest.mark.parametrize("raw", [b"{", b"[" * 100_000, b'{"a": 1} x'])
def test_both_codecs_refuse_the_same(codec: ModuleType, raw: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        codec.loads(raw)


@pytest.mark.parametrize(
    "value", [{"id": "acme1", "name": "Ü", "page_enabled": False}, {"n": 2**70}, [1, None]]
)
def test_both_codecs_write_what_json_reads_back(codec: ModuleType, value: object) -> None:
    assert json.loads(codec.dumps(value)) == value


def test_an_integer_past_64_bits_is_the_one_difference(codec: ModuleType) -> None:
    # orjson reads it as a float; the models' strict integer fields then refuse it as a
    # format error, where the stdlib's int would pass. No Conduit id comes near 2**64.
    value = codec.loads(b'{"big": 123456789012345678901234567890}')["big"]
    assert value == pytest.approx(123456789012345678901234567890)
