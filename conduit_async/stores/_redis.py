"""`RedisTokenStore`: one company-token cache for every worker process, on Redis.

Two levels. L1 is this process's in-memory LRU (`InMemoryTokenStore`): every
cache hit is served from it with no I/O. L2 is Redis, asked only on an L1
miss, when a lease enters its refresh window, and on a refusal (401):

- A lease in Redis with more life than ours is adopted, not fetched again.
- Otherwise one process fetches for all: it takes a per-company lock
  (`SET NX PX`, released only by its holder, by a Lua compare-and-delete),
  fetches, hands the lease to its own callers at once, then writes it
  (expiring with it), publishes it and unlocks in the background; the others
  wait for that publication (at most a quarter of the request timeout) and
  fetch for themselves if it does not come (holder died, Redis slow).
- Every new lease is published; each process replaces its L1 copy at once,
  so a server that revokes a company's older tokens on reissue causes no
  storm of 401s, and keeps it while its L1 has room if it had none (leases
  it published itself stay there too): a first call reads nothing from Redis.
- A 401 drops the lease in Redis only if Redis still holds that token; if it
  holds a newer one, that one comes back in the same round trip for the retry.
- A 429's pause is published to every process of the same Link APP and
  organization (the request path never waits on Redis for it).
- Workspaces: one listing serves every process (the listing is kept in Redis,
  sealed, for `snapshot_ttl`).

Everything in Redis is sealed (AES-GCM, see `_seal`) and named by fingerprints.
Every script goes in one round trip (EVAL). `connect()` (called by `async with
Conduit(...)`) makes credentials Redis refuses a startup error; Redis being
down, at startup or later, is not an outage: every operation has a short timeout, a circuit
breaker skips Redis while it is down (at once when refused, after a few seconds
of timeouts when merely slow), the broker carries on from L1 and its own
fetches, and Redis is used again when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import attrs

from ..errors import ConfigurationError
from ..models import Workspace
from ..tokens import DEFAULT_CACHE_SIZE, Clock, InMemoryTokenStore, Pausable, TokenLease
from ..tokens._shared import LeaseFetch, WorkspaceListing
from ._breaker import Breaker
from ._layout import (
    _DELETE_IF_PREFIX,
    _DISCARD_OR_NEWER,
    _FOUND,
    _FP_LEN,
    _ISSUED_LEN,
    _LEASE_MSG,
    _LISTED_MSG,
    _LOCKED,
    _PAUSE_MSG,
    _READ_OR_LOCK,
    _SENDER_LEN,
    _SET_IF_NEWER,
    _lease_from,
    _lease_json,
    _Names,
)
from ._seal import Sealer, fingerprint, parse_key

__all__ = ["REDIS_EXTRA_HINT", "RedisStoreStats", "RedisTokenStore"]

log = logging.getLogger("conduit_async.stores")

T = TypeVar("T")

REDIS_EXTRA_HINT = 'install the redis extra: pip install "conduit-async[redis]"'

#: How long a process waits for another's fetch, as a fraction of the request timeout.
WAIT_FRACTION = 0.25
#: The wait when the client's request timeout is unknown.
DEFAULT_WAIT = 5.0
#: Once fetch times are known, a wait lasts this many typical fetches (at least _MIN_WAIT):
#: no caller waits on another process much longer than its own fetch would take.
_WAIT_FETCHES = 3.0
_MIN_WAIT = 0.1
#: While waiting for a publication, Redis is read again this often (seconds), in case
#: the publication was missed (subscription down or not yet up).
_POLL = 0.05
_POLL_SUBSCRIBED = 0.5
#: Connections to Redis per store (one of them is the subscription's).
_CONNECTIONS = 8
#: Leases written at once by the background writer.
_BATCH = 200
#: Pending background writes kept at most (the oldest are dropped past it).
_MAX_PENDING = 50_000

#: A read-or-lock waiting to be sent: its keys, its arguments, where its answer goes.
_Queued = tuple[list[str], list[Any], "asyncio.Future[list[Any]]"]


class _Unavailable(Exception):
    """Redis did not answer in time (or the breaker is open): carry on without it."""


@attrs.define(eq=False)
class RedisStoreStats:
    """What the shared store did: how much it saved, and how Redis behaved."""

    #: Leases taken from Redis or a publication instead of fetching.
    adopted: int = 0
    #: Leases this process fetched and shared (written and published).
    shared: int = 0
    #: Lease publications from other processes applied to this process's cache.
    received: int = 0
    #: Times this process waited for another's fetch.
    waits: int = 0
    #: Waits that ended without a lease (holder died, Redis slow): fetched ourselves.
    wait_timeouts: int = 0
    #: Workspace listings taken from Redis instead of listing.
    workspace_listings_adopted: int = 0
    pauses_shared: int = 0
    pauses_received: int = 0
    #: Redis operations that failed or timed out, and outages (runs of them).
    errors: int = 0
    #: Of those errors, the operations that timed out (Redis slow rather than gone).
    timeouts: int = 0
    outages: int = 0
    #: Background writes dropped (Redis down, or too many pending).
    writes_dropped: int = 0


class RedisTokenStore:
    """A `TokenStore` shared by every process that uses the same Redis and Link APP.

    Build it with `RedisTokenStore.from_url("redis://host:6379/0", key=...)`,
    or let every `Conduit()` build one from `CONDUIT_TOKEN_STORE_URL` and
    `CONDUIT_TOKEN_STORE_KEY`. `key` is 32 bytes (urlsafe base64 text or raw
    bytes) that encrypt everything stored; `encrypt=False` stores tokens in
    clear and must be asked for. One store serves one `Conduit` (it is closed
    with it). `op_timeout` bounds every Redis operation (seconds).
    """

    def __init__(
        self,
        client: Any,
        *,
        key: str | bytes | None = None,
        encrypt: bool = True,
        maxsize: int = DEFAULT_CACHE_SIZE,
        op_timeout: float = 0.5,
        snapshot_ttl: float = 600.0,
        prefix: str = "conduit",
        breaker: Breaker | None = None,
    ) -> None:
        if encrypt and key is None:
            raise ConfigurationError(
                "a Redis token store encrypts tokens: give it a key (CONDUIT_TOKEN_STORE_KEY, "
                "32 bytes in urlsafe base64), or pass encrypt=False to store them in clear"
            )
        raw_key = parse_key(key) if key is not None else None
        self._sealer = Sealer(raw_key if encrypt else None)
        self._fp_key = raw_key
        #: redis.asyncio.Redis (typed loosely: its stubs answer `X | Awaitable[X]`).
        self._redis: Any = client
        self._l1 = InMemoryTokenStore(maxsize)
        self.op_timeout = op_timeout
        self.snapshot_ttl = snapshot_ttl
        self.prefix = prefix
        self.stats = RedisStoreStats()
        self._breaker = breaker or Breaker()
        self._sender = secrets.token_hex(_SENDER_LEN // 2).encode()
        self._app: _Names | None = None
        self._org: _Names | None = None
        self._bound = False
        self._clock: Clock | None = None
        self._pause: Pausable | None = None
        self._wait = DEFAULT_WAIT
        self._fetch_time: float | None = None
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._pending: dict[str, TokenLease] = {}
        self._fetching: set[str] = set()
        self._queued: list[_Queued] = []
        self._last_pause = b""
        self._writer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = False
        #: Set when the subscription is up, while `connect()` waits for it.
        self._subscribed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws_version: bytes | None = None
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key: str | bytes | None = None,
        encrypt: bool = True,
        maxsize: int = DEFAULT_CACHE_SIZE,
        op_timeout: float = 0.5,
    ) -> RedisTokenStore:
        """A store on the Redis at `url` (`redis://`, `rediss://` or `unix://`).

        `ConfigurationError` if the redis extra is not installed, or the URL or key
        is unusable (the URL, which may hold a password, is never echoed).
        """
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            raise ConfigurationError(
                f"a Redis token store needs redis-py: {REDIS_EXTRA_HINT}"
            ) from None
        try:
            # A few connections, shared: each operation holds one for a round trip, and
            # opening dozens at once (a cold cache) costs more than queueing on a few.
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=_CONNECTIONS,
                timeout=op_timeout,
                socket_timeout=op_timeout,
                socket_connect_timeout=op_timeout,
                # Our own timeouts and breaker decide; redis-py must not retry behind them.
                retry=Retry(NoBackoff(), 0),
            )
            client = Redis.from_pool(pool)  # closing the client closes the pool
        except ValueError:
            raise ConfigurationError(
                "the token store URL (CONDUIT_TOKEN_STORE_URL) is not a usable Redis URL: "
                "expected redis://host:port/db, rediss://... or unix://..."
            ) from None
        return cls(client, key=key, encrypt=encrypt, maxsize=maxsize, op_timeout=op_timeout)

    async def connect(self, *, required: bool = True) -> None:
        """Connect to Redis and subscribe now, within `op_timeout` each.

        Credentials Redis refuses (a wrong password, an ACL) never heal by themselves:
        they are a `ConfigurationError` (naming neither URL nor password) either way.
        A Redis that cannot be reached is one too when `required` (an explicit
        `await store.connect()`, to fail a deploy fast); `async with Conduit(...)`
        connects with `required=False`, because a worker that starts while Redis is
        down must still serve: it logs the outage once and carries on from its own
        cache and fetches, as it would had Redis gone down later, and comes back to
        Redis by itself."""
        try:
            await _within(self._redis.ping(), self.op_timeout)
        except _refusals() as exc:
            raise ConfigurationError(
                f"the shared token store's Redis (CONDUIT_TOKEN_STORE_URL) refused this "
                f"client ({type(exc).__name__}): check its password and ACL"
            ) from None
        except _redis_errors() as exc:
            if not required:
                self._failed("connect", exc)
                return
            raise ConfigurationError(
                f"the shared token store's Redis (CONDUIT_TOKEN_STORE_URL) cannot be reached "
                f"({type(exc).__name__}): check its host, port, password and TLS settings"
            ) from None
        self._breaker.succeeded()
        if not self._channels or self._listening:
            return  # not bound to a client yet (it subscribes on first use), or subscribed
        subscribed = self._subscribed = asyncio.Event()
        self._start_listening()
        try:
            await asyncio.wait_for(subscribed.wait(), self.op_timeout)
        except asyncio.TimeoutError:
            if required:
                raise ConfigurationError(
                    "the shared token store's Redis (CONDUIT_TOKEN_STORE_URL) answers but "
                    "does not let this client subscribe to its channels (an ACL?)"
                ) from None
            # The listener keeps trying in the background; leases still come by reads.
        finally:
            self._subscribed = None

    # -- TokenStore: the in-memory level, no I/O --------------------------------------

    @property
    def maxsize(self) -> int:
        return self._l1.maxsize

    def get(self, key: str) -> TokenLease | None:
        return self._l1.get(key)

    def put(self, key: str, lease: TokenLease) -> None:
        """Keep `lease` here and share it (written and published in the background)."""
        l1 = self._l1
        if l1.get(key) is lease:
            return  # came from Redis, or written there already
        l1.put(key, lease)
        if self._app is None or self._closed or key in self._fetching:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # outside any loop (a test seeding the cache): nothing to share with
        if not self._breaker.allows():
            self.stats.writes_dropped += 1
            return
        pending = self._pending
        pending.pop(key, None)
        pending[key] = lease
        if len(pending) > _MAX_PENDING:
            pending.pop(next(iter(pending)))
            self.stats.writes_dropped += 1
        if self._writer is None or self._writer.done():
            self._writer = self._spawn(self._write_pending())
        self._start_listening()

    def discard(self, key: str, token: str) -> bool:
        return self._l1.discard(key, token)

    def __len__(self) -> int:
        return len(self._l1)

    def __repr__(self) -> str:
        return (
            f"RedisTokenStore(size={len(self._l1)}, maxsize={self._l1.maxsize}, "
            f"encrypted={self._sealer.encrypts}, redis_up={not self._breaker.down})"
        )

    # -- SharedTokenStore: what the broker asks on a miss --------------------------------

    def bind(
        self,
        *,
        link_token: str | None,
        org_token: str | None,
        clock: Clock,
        pause: Pausable,
        request_timeout: float | None = None,
    ) -> None:
        if self._bound:
            raise ConfigurationError(
                "this RedisTokenStore already serves a Conduit client; give each client its "
                "own (RedisTokenStore.from_url(...))"
            )
        self._bound = True
        key = self._fp_key
        if link_token:
            self._app = _Names(f"{self.prefix}:app:{fingerprint('link-app', link_token, key)}")
        if org_token:
            self._org = _Names(f"{self.prefix}:org:{fingerprint('organization', org_token, key)}")
        self._clock = clock
        self._pause = pause
        pause.on_pause = self._share_pause
        if request_timeout is not None:
            self._wait = request_timeout * WAIT_FRACTION

    async def obtain_company(
        self, key: str, current: TokenLease | None, fetch: LeaseFetch
    ) -> TokenLease:
        names = self._app
        if names is None or not self._breaker.allows():
            return await fetch()
        self._start_listening()
        company = fingerprint("company", key, self._fp_key)
        lease_key, lock = names.lease(company), names.lock(company)
        holder = secrets.token_hex(8)
        # Only a lease issued after ours has more life.
        since = -1 if current is None else int(current.issued_at * 1000)
        loop = asyncio.get_running_loop()
        # A refresh ahead of time keeps no caller waiting (the current token is served
        # meanwhile): it can wait the whole bound. A caller with no token left to send
        # waits about as long as its own fetch would take.
        ahead = current is not None and self._now() < current.hard_at
        deadline = loop.time() + (self._wait if ahead else self._wait_bound())
        waiting = "c:" + key
        waited = False
        try:
            while True:
                waiter = self._waiter(waiting)
                # One round trip: a newer lease, or the lock, or word that another has it.
                read_or_lock = functools.partial(
                    self._queue_read_or_lock, [lease_key, lock], [since, holder, self._lock_ms]
                )
                status, raw = await self._op("read", read_or_lock)
                if status == _FOUND:
                    lease = self._open_lease(lease_key, raw)
                    if lease is not None and self._usable(lease, since):
                        return self._adopt(key, lease)
                    since = int(raw[_FP_LEN + 1 : _FP_LEN + 1 + _ISSUED_LEN])  # unusable: pass it
                    continue
                if status == _LOCKED:
                    return await self._fetch_for_all(names, key, lease_key, lock, holder, fetch)
                # Another process is fetching: wait for its publication (or poll, in case
                # it is missed), and take the lock if it lets go without sharing anything.
                left = deadline - loop.time()
                if left <= 0:
                    self.stats.wait_timeouts += 1
                    break
                if not waited:
                    self.stats.waits += 1
                    waited = True
                # With the subscription up, a publication wakes us: Redis is asked again
                # only now and then, in case it was missed.
                poll = _POLL_SUBSCRIBED if self._listening else _POLL
                await asyncio.wait((waiter,), timeout=min(poll, left))
                published = self._l1.get(key)  # a publication lands here
                if published is not None and self._usable(published, since):
                    self.stats.adopted += 1
                    return published
        except _Unavailable:
            pass
        finally:
            self._waiters.pop(waiting, None)
        return await self._timed(fetch)

    async def _queue_read_or_lock(self, keys: list[str], args: list[Any]) -> list[Any]:
        """One read-or-lock; all those asked for in the same turn of the loop go to Redis
        in one pipeline (a cold cache asks for hundreds at once)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[Any]] = loop.create_future()
        self._queued.append((keys, args, answer))
        if len(self._queued) == 1:
            loop.call_soon(self._send_queued)
        return await answer

    def _send_queued(self) -> None:
        queued, self._queued = self._queued, []
        if self._closed:
            for *_, answer in queued:
                answer.cancel()
            return
        self._background(lambda: self._read_or_lock_all(queued))

    async def _read_or_lock_all(self, queued: list[_Queued]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in queued:
                    _eval(pipe, _READ_OR_LOCK, keys, args)
                answers = await pipe.execute()
        except asyncio.CancelledError:
            for *_, answer in queued:
                answer.cancel()
            raise
        except Exception as exc:  # each caller's `_op` judges it
            for *_, answer in queued:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (*_, answer), result in zip(queued, answers, strict=True):
            if not answer.done():  # its caller may have timed out
                answer.set_result(result)

    def _usable(self, lease: TokenLease, since: int) -> bool:
        """Issued after the lease we have (`since`, ms) and still before its hard deadline."""
        return int(lease.issued_at * 1000) > since and self._now() < lease.hard_at

    async def _fetch_for_all(
        self, names: _Names, key: str, lease_key: str, lock: str, holder: str, fetch: LeaseFetch
    ) -> TokenLease:
        """Holding the lock: fetch, hand the lease to our callers at once, and store,
        publish and unlock in one round trip in the background.

        Our callers never wait on that write (a slow Redis would add its latency to every
        fetch); the other processes are waiting for its publication, not for us."""
        self._fetching.add(key)  # `put` leaves the sharing of this one to us
        try:
            lease = await self._timed(fetch)
        except BaseException:
            self._background(lambda: self._release(lock, holder))
            raise
        finally:
            self._fetching.discard(key)
        self._l1_newer(key, lease)
        self._background(lambda: self._share_fetched(names, key, lease, lock, holder))
        return lease

    async def _share_fetched(
        self, names: _Names, key: str, lease: TokenLease, lock: str, holder: str
    ) -> None:
        try:
            await self._op(
                "write", lambda: self._write_leases(names, [(key, lease)], unlock=(lock, holder))
            )
        except _Unavailable:
            # Let the others fetch for themselves now rather than when the lock runs out.
            await self._release(lock, holder)

    async def _timed(self, fetch: LeaseFetch) -> TokenLease:
        """`fetch()`, keeping a moving average of how long fetches take here."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        lease = await fetch()
        took = loop.time() - started
        self._fetch_time = took if self._fetch_time is None else 0.8 * self._fetch_time + 0.2 * took
        return lease

    def _wait_bound(self) -> float:
        """How long to wait for another process's fetch: about what fetching ourselves
        would take (a few typical fetches), never more than the configured bound."""
        if self._fetch_time is None:
            return self._wait
        return min(self._wait, max(_MIN_WAIT, _WAIT_FETCHES * self._fetch_time))

    async def company_refused(
        self, key: str, token: str, issued_at: float | None = None
    ) -> TokenLease | None:
        if self._app is None:
            return None
        lease_key = self._app.lease(fingerprint("company", key, self._fp_key))
        prefix = fingerprint("token", token, self._fp_key).encode() + b"|"
        since = -1 if issued_at is None else int(issued_at * 1000)
        try:
            raw = await self._op(
                "discard",
                lambda: _eval(self._redis, _DISCARD_OR_NEWER, [lease_key], [prefix, since]),
            )
        except _Unavailable:
            return None
        if not raw:
            return None
        lease = self._open_lease(lease_key, raw)
        if lease is None or lease.token == token or not self._usable(lease, since):
            return None
        return self._adopt(key, lease)

    async def obtain_workspaces(
        self, wanted: Callable[[Sequence[Workspace]], bool], listing: WorkspaceListing
    ) -> Sequence[Workspace] | None:
        names = self._org
        if names is None or not self._breaker.allows():
            await listing()
            return None
        self._start_listening()

        async def snapshot() -> list[Workspace] | None:
            found = await self._read_snapshot(names)
            return found if found is not None and wanted(found) else None

        try:
            found = await snapshot()
            if found is not None:
                self.stats.workspace_listings_adopted += 1
                return found
            waiter = self._waiter("workspaces")
            lock = names.lock("workspaces")
            holder = await self._lock(lock)
            if holder is not None:
                try:
                    found = await snapshot()
                    if found is not None:
                        self.stats.workspace_listings_adopted += 1
                        return found
                    listed = await listing()
                    await self._share_snapshot(names, listed)
                    return None
                finally:
                    self._background(lambda: self._release(lock, holder))
            self.stats.waits += 1
            found = await self._wait_for(waiter, snapshot, lock)
            if found is not None:
                self.stats.workspace_listings_adopted += 1
                return found
            self.stats.wait_timeouts += 1
        except _Unavailable:
            pass
        finally:
            self._waiters.pop("workspaces", None)
        await listing()
        return None

    def workspaces_changed(self, refused_token: str | None) -> None:
        version, self._ws_version = self._ws_version, None
        if self._org is None or version is None or self._closed:
            return
        key = self._org.workspaces
        self._background(
            lambda: self._op_quiet(
                "drop listing",
                lambda: _eval(self._redis, _DELETE_IF_PREFIX, [key], [version + b"|"]),
            )
        )

    async def aclose(self) -> None:
        """Stop listening and writing, and close the Redis connections."""
        self._closed = True
        tasks = [t for t in (self._listener, self._writer, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        try:
            await self._redis.aclose()
        except Exception:  # closing a broken connection must not fail close()
            log.debug("closing the Redis connection failed", exc_info=True)

    # -- Redis operations ------------------------------------------------------------

    @property
    def _lock_ms(self) -> int:
        return max(1, int(self._wait * 1000))

    def _now(self) -> float:
        assert self._clock is not None, "bind() first"
        return self._clock()

    async def _op(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` within the timeout; `_Unavailable` if it fails or the breaker is open."""
        breaker = self._breaker
        if not breaker.allows():
            raise _Unavailable
        try:
            result = await _within(call(), self.op_timeout)
        except _redis_errors() as exc:
            self._failed(what, exc)
            raise _Unavailable from None
        breaker.succeeded()
        return result

    async def _op_quiet(self, what: str, call: Callable[[], Awaitable[Any]]) -> None:
        with contextlib.suppress(_Unavailable):
            await self._op(what, call)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.stats.errors += 1
        breaker = self._breaker
        if _timed_out(exc):
            self.stats.timeouts += 1
            starts = breaker.timed_out(what, exc)
        else:
            starts = breaker.failed(what, exc)
        if starts:
            self.stats.outages += 1
            # Every pooled connection is likely as dead as this one: drop them all now, so
            # that a Redis that comes back is not met by one stale connection after another.
            self._background(lambda: self._redis.connection_pool.disconnect())

    def _open_lease(self, lease_key: str, raw: bytes) -> TokenLease | None:
        """The lease in a stored value, or None if this store cannot read it."""
        plain = self._sealer.open(raw[_FP_LEN + _ISSUED_LEN + 2 :], lease_key)
        return None if plain is None else _lease_from(json.loads(plain))[1]

    async def _write_pending(self) -> None:
        """Write and publish leases `put` handed over, in batches, until none are left."""
        names = self._app
        assert names is not None
        while self._pending and not self._closed:
            batch: list[tuple[str, TokenLease]] = []
            while self._pending and len(batch) < _BATCH:
                key = next(iter(self._pending))
                batch.append((key, self._pending.pop(key)))
            try:
                await self._op("write", functools.partial(self._write_leases, names, batch))
            except _Unavailable:
                self.stats.writes_dropped += len(batch) + len(self._pending)
                self._pending.clear()

    async def _write_leases(
        self,
        names: _Names,
        leases: list[tuple[str, TokenLease]],
        unlock: tuple[str, str] | None = None,
    ) -> None:
        """Store each lease (unless Redis has a newer one; expiring with it), publish it,
        and let go of the lock `unlock` names (its key and our holder token)."""
        now = self._now()
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, lease in leases:
                ttl_ms = int((lease.expires_at - now) * 1000)
                if ttl_ms <= 0:
                    continue
                lease_key = names.lease(fingerprint("company", key, self._fp_key))
                fp = fingerprint("token", lease.token, self._fp_key).encode()
                issued = int(lease.issued_at * 1000)
                plain = _lease_json(key, lease)
                value = b"|".join(
                    (
                        fp,
                        str(issued).zfill(_ISSUED_LEN).encode(),
                        self._sealer.seal(plain, lease_key),
                    )
                )
                _eval(pipe, _SET_IF_NEWER, [lease_key], [value, issued, ttl_ms])
                pipe.publish(names.events, self._message(_LEASE_MSG, plain, names.events))
            if unlock is not None:
                lock, holder = unlock
                _eval(pipe, _DELETE_IF_PREFIX, [lock], [holder.encode()])
            await pipe.execute()
        self.stats.shared += len(leases)

    async def _read_snapshot(self, names: _Names) -> list[Workspace] | None:
        raw = await self._op("read", lambda: self._redis.get(names.workspaces))
        if not raw or b"|" not in raw[:17]:
            return None
        version, sealed = raw[:16], raw[17:]
        plain = self._sealer.open(sealed, names.workspaces)
        if plain is None:
            return None
        self._ws_version = version
        return [
            Workspace(id=ws_id, name=name, token=token, ext_id=ext_id)
            for ws_id, name, token, ext_id in json.loads(plain)
        ]

    async def _share_snapshot(self, names: _Names, listed: Sequence[Workspace]) -> None:
        version = secrets.token_hex(8).encode()
        plain = json.dumps([[ws.id, ws.name, ws.token, ws.ext_id] for ws in listed]).encode()
        value = version + b"|" + self._sealer.seal(plain, names.workspaces)
        message = self._sender_prefix(_LISTED_MSG)

        async def write() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(names.workspaces, value, px=int(self.snapshot_ttl * 1000))
                pipe.publish(names.events, message)
                await pipe.execute()

        await self._op_quiet("write listing", write)
        self._ws_version = version

    async def _lock(self, lock: str) -> str | None:
        """Take `lock` for a short lease; the holder's token, or None if another has it."""
        holder = secrets.token_hex(8)
        taken = await self._op(
            "lock", lambda: self._redis.set(lock, holder, nx=True, px=self._lock_ms)
        )
        return holder if taken else None

    async def _release(self, lock: str, holder: str) -> None:
        await self._op_quiet(
            "unlock", lambda: _eval(self._redis, _DELETE_IF_PREFIX, [lock], [holder.encode()])
        )

    # -- waiting for another process ---------------------------------------------------

    def _waiter(self, name: str) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[name] = waiter
        return waiter

    async def _wait_for(
        self, waiter: asyncio.Future[None], check: Callable[[], Awaitable[T | None]], lock: str
    ) -> T | None:
        """`check()` each time a publication wakes us or `_POLL` passes, until it finds
        something, the holder lets go of `lock` without sharing anything (it failed), or
        the wait is over (it died, or Redis is slow)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.wait((waiter,), timeout=min(_POLL, left))
            found = await check()
            if found is not None:
                return found
            if not await self._op("poll", lambda: self._redis.exists(lock)):
                return None

    def _adopt(self, key: str, lease: TokenLease) -> TokenLease:
        self.stats.adopted += 1
        return self._l1_newer(key, lease)

    def _l1_newer(self, key: str, lease: TokenLease) -> TokenLease:
        current = self._l1.get(key)
        if current is None or lease.issued_at >= current.issued_at:
            self._l1.put(key, lease)
            return lease
        return current

    # -- publications -----------------------------------------------------------------

    def _sender_prefix(self, kind: bytes) -> bytes:
        return kind + self._sender

    def _message(self, kind: bytes, plain: bytes, channel: str) -> bytes:
        return self._sender_prefix(kind) + self._sealer.seal(plain, channel)

    def _share_pause(self, seconds: float) -> None:
        if self._closed or not self._breaker.allows():
            return
        channels = self._channels
        # One id for the copies on both channels: a process on both counts it once.
        pause_id = secrets.token_hex(4).encode()
        message = self._sender_prefix(_PAUSE_MSG) + pause_id + repr(float(seconds)).encode()

        async def publish() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel in channels:
                    pipe.publish(channel, message)
                await pipe.execute()

        self._background(lambda: self._op_quiet("share pause", publish))
        self.stats.pauses_shared += 1

    def _start_listening(self) -> None:
        if self._listener is None and not self._closed and self._channels:
            self._listener = self._spawn(self._listen())

    @property
    def _channels(self) -> list[str]:
        return [n.events for n in (self._app, self._org) if n is not None]

    async def _listen(self) -> None:
        """Apply other processes' publications; reconnect by itself after any failure."""
        channels = self._channels
        while not self._closed:
            wait = self._breaker.retry_in()
            if wait > 0:
                await asyncio.sleep(wait)
            pubsub = self._redis.pubsub()
            try:
                await _within(pubsub.subscribe(*channels), self.op_timeout)
                self._breaker.succeeded()
                self._listening = True
                if self._subscribed is not None:
                    self._subscribed.set()
                idle = 0.0
                # Not `while True`: redis-py's read can swallow the cancellation `aclose()`
                # sends when it lands as the read times out (it then answers None), and
                # the listener must still end, or closing the client waits forever.
                while not self._closed:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        idle += 1.0
                        if idle >= 5.0:  # a silent dead connection shows on a ping
                            await _within(pubsub.ping(), self.op_timeout)
                            idle = 0.0
                        continue
                    idle = 0.0
                    if message.get("type") == "message":
                        self._receive(message["channel"], message["data"])
            except _redis_errors() as exc:
                self._failed("subscribe", exc)
            except Exception as exc:  # not Redis's: still never the end of the subscription
                log.warning(
                    "shared token store: the subscription failed (%s); subscribing again",
                    type(exc).__name__,
                )
                self._failed("subscribe", exc)
            finally:
                self._listening = False
                try:
                    await pubsub.aclose()
                except Exception:  # the connection is already broken
                    log.debug("closing the Redis subscription failed", exc_info=True)

    def _receive(self, channel: bytes, data: bytes) -> None:
        """Apply one publication; one that cannot be read (another version of this store,
        a stranger on the channel) is skipped, never the end of the subscription."""
        try:
            self._received(channel.decode(), data)
        except Exception as exc:
            log.debug(
                "shared token store: skipped an unreadable publication (%s)", type(exc).__name__
            )

    def _received(self, channel: str, data: bytes) -> None:
        kind, sender, body = data[:1], data[1 : 1 + _SENDER_LEN], data[1 + _SENDER_LEN :]
        if sender == self._sender:
            return
        if kind == _LEASE_MSG:
            plain = self._sealer.open(body, channel)
            if plain is None:
                return
            key, lease = _lease_from(json.loads(plain))
            l1 = self._l1
            # A company this process has not asked for yet is kept too while there is
            # room (never evicting one it uses): its first call then reads no Redis.
            if l1.get(key) is not None or "c:" + key in self._waiters or len(l1) < l1.maxsize:
                self._l1_newer(key, lease)
                self.stats.received += 1
            _wake(self._waiters.get("c:" + key))
        elif kind == _PAUSE_MSG and self._pause is not None:
            pause_id, text = body[:8], body[8:]
            if pause_id == self._last_pause:
                return
            self._last_pause = pause_id
            try:
                seconds = float(text)
            except ValueError:
                return
            if 0 < seconds <= 3600:
                self._pause.hold(seconds)
                self.stats.pauses_received += 1
        elif kind == _LISTED_MSG:
            _wake(self._waiters.get("workspaces"))

    # -- tasks ------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name="conduit-token-store")
        task.add_done_callback(_retrieve)
        return task

    def _background(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `work()` without waiting for it (closing cancels it); nothing outside a loop."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(work(), name="conduit-token-store")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_retrieve)


def _eval(target: Any, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """`script` run by EVAL on `target` (the client, or a pipeline it is queued on).

    Plain EVAL, not redis-py's `Script`: inside a pipeline that one first sends
    SCRIPT EXISTS (and SCRIPT LOAD) in a round trip of its own, which doubled the
    latency of every read. EVAL carries the source (a few hundred bytes) and needs no
    NOSCRIPT recovery after a restart; Redis caches the compiled script by its hash.
    """
    return target.eval(script, len(keys), *keys, *args)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Look at a finished background task's outcome, once: an exception nobody retrieves
    would surface later as "Task exception was never retrieved" (an error under
    `filterwarnings=error`, noise in a web app's log). Only the exception's type is
    logged: its message may quote what was sent to Redis."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    if isinstance(exc, _redis_errors()):
        log.debug("shared token store: a background operation failed (%s)", type(exc).__name__)
    else:
        log.warning(
            "shared token store: a background task failed (%s); carrying on without it",
            type(exc).__name__,
        )


async def _within(operation: Awaitable[T], seconds: float) -> T:
    """`operation` within `seconds`, in a task whose outcome is always retrieved.

    `asyncio.wait_for` runs it in a task of its own. When the caller is cancelled
    while that task is being cancelled (a client closing while an operation times
    out), the task can still end with Redis's error after nobody awaits it any more,
    and that surfaced as "Task exception was never retrieved". Its error matters only
    to a caller that is still waiting, and that caller gets it from `wait_for`."""
    task = asyncio.ensure_future(operation)
    task.add_done_callback(_silently_retrieved)
    return await asyncio.wait_for(task, seconds)


def _silently_retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _timed_out(exc: BaseException) -> bool:
    """Redis was too slow (rather than refusing or dropping the connection): our own
    deadline, redis-py's socket timeout, or no pooled connection free in time."""
    if isinstance(exc, asyncio.TimeoutError):  # before OSError: TimeoutError is one
        return True
    try:
        from redis import exceptions
    except ImportError:
        return False
    if isinstance(exc, exceptions.TimeoutError):
        return True
    # BlockingConnectionPool: "No connection available", every connection busy too long.
    return isinstance(exc, exceptions.ConnectionError) and isinstance(
        exc.__cause__, asyncio.TimeoutError
    )


@functools.cache
def _refusals() -> tuple[type[BaseException], ...]:
    """Redis's answers that a retry cannot change: a wrong password, no permission."""
    try:
        from redis.exceptions import AuthenticationError, NoPermissionError
    except ImportError:  # only a hand-made client without redis-py installed
        return ()
    return (AuthenticationError, NoPermissionError)


@functools.cache
def _redis_errors() -> tuple[type[BaseException], ...]:
    # Looked up when first needed: importing conduit_async must not import redis-py
    # (nor what it imports, OpenTelemetry among them) for users who never use Redis.
    try:
        from redis.exceptions import RedisError
    except ImportError:  # only a hand-made client without redis-py installed
        return (OSError, asyncio.TimeoutError)
    return (RedisError, OSError, asyncio.TimeoutError)
