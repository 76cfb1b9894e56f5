"""What goes into Redis: sealed (AES-GCM) values and non-reversible names.

A token never reaches Redis in clear. Values are encrypted with AES-256-GCM
under the configured key, bound to the Redis key (or channel) they are stored
under as associated data, so a value copied to another key does not decrypt.
Names are fingerprints: a BLAKE2b (keyed with the store key when there is one)
of the Link APP or organization token, so two apps sharing one Redis never meet,
and of each company id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from ..errors import ConfigurationError

__all__ = ["KEY_BYTES", "Sealer", "fingerprint", "parse_key"]

#: AES-256: the configured key is 32 bytes, given as urlsafe base64.
KEY_BYTES = 32
_NONCE_BYTES = 12
_PLAIN = b"p"  # prefix of a value stored without encryption (encrypt=False)
_SEALED = b"s"


def parse_key(key: str | bytes) -> bytes:
    """The 32-byte key from its urlsafe-base64 text (or the raw bytes).

    `ConfigurationError` for anything else; the message never echoes the key.
    """
    if isinstance(key, bytes) and len(key) == KEY_BYTES:
        return key
    try:
        text = key.decode("ascii") if isinstance(key, bytes) else key
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, UnicodeError, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ConfigurationError(
            "the token store key (CONDUIT_TOKEN_STORE_KEY) must be 32 bytes in urlsafe "
            'base64, e.g. from: python -c "import base64,os;'
            'print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
        )
    return raw


def fingerprint(kind: str, value: str, key: bytes | None) -> str:
    """A short non-reversible name for `value` (a token or a company id), keyed with the
    store key when there is one."""
    digest = hashlib.blake2b(
        value.encode(), digest_size=12, key=key or b"", person=kind.encode()[:16]
    )
    return digest.hexdigest()


class Sealer:
    """Encrypts and decrypts values bound to where they are stored; `None` key = plaintext."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes | None) -> None:
        if key is None:
            self._aead = None
            return
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigurationError(
                "an encrypted token store needs the cryptography package: "
                'pip install "conduit-async[redis]"'
            ) from None
        self._aead = AESGCM(key)

    @property
    def encrypts(self) -> bool:
        return self._aead is not None

    def seal(self, plain: bytes, where: str) -> bytes:
        if self._aead is None:
            return _PLAIN + plain
        nonce = os.urandom(_NONCE_BYTES)
        return _SEALED + nonce + self._aead.encrypt(nonce, plain, where.encode())

    def open(self, sealed: bytes, where: str) -> bytes | None:
        """The plaintext, or None for a value this store cannot read (another key,
        tampered, or plaintext when encryption is on): treated as absent."""
        kind, body = sealed[:1], sealed[1:]
        if self._aead is None:
            return body if kind == _PLAIN else None
        if kind != _SEALED or len(body) <= _NONCE_BYTES:
            return None
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], where.encode())
        except InvalidTag:
            return None
