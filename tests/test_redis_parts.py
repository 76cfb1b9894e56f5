"""The shared store's pure parts, without a Redis: the circuit breaker and the sealing of
values and names (what makes "nothing secret in Redis" true)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os

import pytest

from conduit_async import ConfigurationError

pytest.importorskip("cryptography", reason='the redis extra: pip install -e ".[redis]"')

from conduit_async.stores._breaker import Breaker
from conduit_async.stores._seal import Sealer, fingerprint, parse_key

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_backs_off_doubling_to_a_cap_and_warns_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breaker = Breaker(first_backoff=1.0, max_backoff=3.0, now=clock)
    assert breaker.allows() and not breaker.down
    assert breaker.failed("read", ConnectionError()) is True  # an outage starts
    assert not breaker.allows() and breaker.retry_in() == 1.0
    clock.now += 1.0
    assert breaker.allows()  # half-open: one probe
    assert breaker.failed("read", ConnectionError()) is False  # the same outage
    assert breaker.retry_in() == 2.0
    clock.now += 2.0
    breaker.failed("read", ConnectionError())
    assert breaker.retry_in() == 3.0  # capped
    breaker.succeeded()
    assert breaker.allows() and not breaker.down and breaker.retry_in() == 0.0
    breaker.failed("write", TimeoutError())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per outage, not one per failure
    assert "back" in caplog.text


def test_timeouts_open_the_breaker_only_after_3_s_without_a_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breaker = Breaker(first_backoff=1.0, max_backoff=3.0, now=clock)
    assert breaker.timed_out("read", TimeoutError()) is False  # a blip
    clock.now += 2.0
    assert breaker.timed_out("read", TimeoutError()) is False
    assert breaker.allows() and not breaker.down
    breaker.succeeded()  # an answer in between: the slow spell starts again
    clock.now += 2.0
    assert breaker.timed_out("read", TimeoutError()) is False
    clock.now += 2.9
    assert breaker.timed_out("read", TimeoutError()) is False and breaker.allows()
    clock.now += 0.1
    assert breaker.timed_out("read", TimeoutError()) is True  # 3 s with no success: open
    assert not breaker.allows() and breaker.down and breaker.retry_in() == 1.0
    clock.now += 1.0
    assert breaker.allows()  # the probe...
    assert breaker.timed_out("read", TimeoutError()) is False  # ...timed out: still open
    assert not breaker.allows() and breaker.retry_in() == 2.0
    breaker.succeeded()
    assert breaker.allows() and not breaker.down
    assert breaker.timed_out("read", TimeoutError()) is False  # after it: a blip again
    # A refused connection needs no patience.
    assert breaker.failed("read", ConnectionRefusedError()) is True
    assert not breaker.allows()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_the_store_tells_a_slow_redis_from_one_that_refuses() -> None:
    import asyncio

    from redis import exceptions

    from conduit_async.stores._redis import _timed_out

    assert _timed_out(asyncio.TimeoutError())
    assert _timed_out(exceptions.TimeoutError("Timeout reading from socket"))
    try:  # a BlockingConnectionPool with every connection busy past its timeout
        try:
            raise asyncio.TimeoutError
        except asyncio.TimeoutError as err:
            raise exceptions.ConnectionError("No connection available.") from err
    except exceptions.ConnectionError as exc:
        assert _timed_out(exc)
    assert not _timed_out(exceptions.ConnectionError("Connection refused"))
    assert not _timed_out(ConnectionRefusedError())
    assert not _timed_out(ConnectionResetError())


def test_sealed_values_open_only_where_they_were_stored_and_only_with_the_key() -> None:
    sealer = Sealer(parse_key(KEY))
    sealed = sealer.seal(b"tok-SECRET", "conduit:app:x:lease:y")
    assert b"tok-SECRET" not in sealed
    assert sealer.open(sealed, "conduit:app:x:lease:y") == b"tok-SECRET"
    assert sealer.open(sealed, "conduit:app:x:lease:z") is None  # moved to another key
    assert sealer.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), "conduit:app:x:lease:y") is None
    other = Sealer(os.urandom(32))
    assert other.open(sealed, "conduit:app:x:lease:y") is None
    assert sealer.seal(b"a", "k") != sealer.seal(b"a", "k")  # a fresh nonce each time


def test_plaintext_is_only_what_was_asked_for_and_never_mistaken_for_sealed() -> None:
    plain, sealed = Sealer(None), Sealer(parse_key(KEY))
    value = plain.seal(b"tok", "k")
    assert plain.open(value, "k") == b"tok"
    assert sealed.open(value, "k") is None  # an encrypting store ignores clear values
    assert plain.open(sealed.seal(b"tok", "k"), "k") is None


@pytest.mark.parametrize("key", ["", "short-SECRET", base64.urlsafe_b64encode(b"x" * 31).decode()])
def test_a_bad_key_is_a_configuration_error_that_does_not_echo_it(key: str) -> None:
    with pytest.raises(ConfigurationError, match="32 bytes") as caught:
        parse_key(key)
    if key:
        assert key not in str(caught.value)


def test_fingerprints_name_without_revealing_and_differ_by_key_and_kind() -> None:
    key = parse_key(KEY)
    a = fingerprint("link-app", "link-SECRET", key)
    assert "SECRET" not in a and len(a) == 24
    assert a == fingerprint("link-app", "link-SECRET", key)
    assert a != fingerprint("organization", "link-SECRET", key)
    assert a != fingerprint("link-app", "link-SECRET", os.urandom(32))
    assert a != fingerprint("link-app", "link-SECRET2", key)


class _StubbornSubscription:
    """A pub/sub whose read swallows a cancellation and answers "no message", as
    redis-py's can when the cancellation lands just as its read times out."""

    def __init__(self) -> None:
        self.reads = 0
        self.reading = asyncio.Event()
        self.stubborn = True

    async def subscribe(self, *channels: str) -> None:
        return None

    async def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float = 0.0
    ) -> None:
        self.reads += 1
        self.reading.set()
        try:
            await asyncio.sleep(timeout)
        except asyncio.CancelledError:
            if not self.stubborn:
                raise
        return None

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class _StubbornClient:
    def __init__(self) -> None:
        self.subscription = _StubbornSubscription()

    def pubsub(self) -> _StubbornSubscription:
        return self.subscription

    async def aclose(self) -> None:
        return None


async def test_closing_ends_a_listener_whose_read_swallows_the_cancellation() -> None:
    from conduit_async import Conduit
    from conduit_async.stores import RedisTokenStore

    client = _StubbornClient()
    store = RedisTokenStore(client, encrypt=False)
    Conduit("org", "link", token_store=store)  # binds it: it now has channels to listen on
    store._start_listening()
    await client.subscription.reading.wait()
    closing = asyncio.ensure_future(store.aclose())
    done, _ = await asyncio.wait({closing}, timeout=5)
    # It used to wait forever, the listener reading again after each swallowed
    # cancellation; from here on a cancellation cancels, so a failure cannot hang.
    client.subscription.stubborn = False
    if not done:
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
    assert done, "aclose() was still waiting for the listener after 5 s"
    assert client.subscription.reads <= 2


class _SlowToCancel:
    """A Redis call that, cancelled on its timeout, takes a moment to give up and then
    fails with Redis's own error (as redis-py does while it drops the connection)."""

    async def get(self, key: str) -> bytes:
        from redis.exceptions import ConnectionError as RedisConnectionError

        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            raise RedisConnectionError("Connection closed by server.") from None
        return b""

    async def aclose(self) -> None:
        return None


async def test_a_caller_cancelled_while_its_operation_times_out_leaves_nothing_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gc

    from conduit_async.stores import RedisTokenStore

    store = RedisTokenStore(_SlowToCancel(), encrypt=False, op_timeout=0.02)
    caller = asyncio.ensure_future(store._op("read", lambda: store._redis.get("k")))
    await asyncio.sleep(0.04)  # timed out: the operation is being cancelled...
    caller.cancel()  # ...when its caller goes too (a client closing)
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0.1)  # the operation ends, with Redis's error
    gc.collect()
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    await store.aclose()
