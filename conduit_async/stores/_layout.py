"""How the shared store lays tokens out in Redis: stored values, Lua scripts, messages.

A lease is stored as ``<token fingerprint>|<issued ms>|<sealed lease>``: the plain
prefix lets Lua compare tokens and ages without ever seeing a token. Key and channel
names hold fingerprints only.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ..tokens import TokenLease

_FP_LEN = 24  # hex characters of a token fingerprint (fingerprint's digest_size * 2)
_ISSUED_LEN = 16  # digits of issued_at in milliseconds, zero-padded

_SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local issued = tonumber(string.sub(cur, 26, 41))
  if issued and issued > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
# KEYS: lease, lock. ARGV: the issued ms to beat, the holder's token, the lock's lease (ms).
_READ_OR_LOCK = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local issued = tonumber(string.sub(cur, 26, 41))
  if issued and issued > tonumber(ARGV[1]) then return {1, cur} end
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {2, ''} end
return {3, ''}
"""
_FOUND, _LOCKED = 1, 2
_DELETE_IF_PREFIX = """
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# A 401's compare-and-delete. KEYS: lease. ARGV: the refused token's fingerprint and '|',
# the issued ms to beat. Drops the lease if it holds the refused token; else returns it if
# it was issued after the refused one (the caller retries with it: no second round trip).
_DISCARD_OR_NEWER = """
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
if string.sub(cur, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return false
end
local issued = tonumber(string.sub(cur, 26, 41))
if issued and issued > tonumber(ARGV[2]) then return cur end
return false
"""

_LEASE_MSG = b"L"
_PAUSE_MSG = b"P"
_LISTED_MSG = b"W"
_SENDER_LEN = 16


@attrs.frozen
class _Names:
    """Redis key and channel names of one Link APP or organization (fingerprints only)."""

    base: str

    def lease(self, company_fp: str) -> str:
        return f"{self.base}:lease:{company_fp}"

    def lock(self, what: str) -> str:
        return f"{self.base}:lock:{what}"

    @property
    def events(self) -> str:
        return f"{self.base}:events"

    @property
    def workspaces(self) -> str:
        return f"{self.base}:workspaces"


def _lease_json(key: str, lease: TokenLease) -> bytes:
    return json.dumps(
        [
            key,
            lease.token,
            lease.issued_at,
            lease.soft_at,
            lease.hard_at,
            lease.expires_at,
            lease.server_expires_at,
            lease.server_date,
        ]
    ).encode()


def _lease_from(fields: list[Any]) -> tuple[str, TokenLease]:
    key, token, issued, soft, hard, expires, server_expires, server_date = fields
    return key, TokenLease(
        token=token,
        issued_at=issued,
        soft_at=soft,
        hard_at=hard,
        expires_at=expires,
        server_expires_at=server_expires,
        server_date=server_date,
    )
