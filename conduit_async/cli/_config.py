"""Where the CLI gets its client from: global options, the environment, a token file.

Tokens are secrets: they come from the environment or from a file only the
user can read (refused otherwise, as ssh refuses a private key), and no
message here ever quotes a token file's contents.
"""

from __future__ import annotations

import argparse
import os
import stat
from typing import Literal

import attrs

from ..client import DEFAULT_MAX_CONNECTIONS, Conduit
from ..errors import ConfigurationError

__all__ = ["Need", "TokenFile", "UsageError", "make_client", "read_token_file"]

#: Which API token a command cannot do without.
Need = Literal["org", "link"]

_KEYS = {
    "CONDUIT_TOKEN": "token",
    "CONDUIT_LINK_TOKEN": "link_token",
    "CONDUIT_BASE_URL": "base_url",
    "CONDUIT_LINK_BASE_URL": "link_base_url",
}
_MAX_TOKEN_FILE = 64 * 1024


class UsageError(Exception):
    """A mistake in the command line or in a file it names: exit status 2, one line."""


@attrs.frozen
class TokenFile:
    """What a token file holds: `KEY=value` settings, or one bare token."""

    settings: dict[str, str] = attrs.field(repr=False)
    bare: str | None = attrs.field(default=None, repr=False)


def read_token_file(path: str) -> TokenFile:
    """Read `CONDUIT_TOKEN=...`-style lines (or a single token) from a private file.

    Refuses a file that group or others can access: a token readable by
    other accounts is a leaked token.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as error:
        raise ConfigurationError(f"cannot read token file {path!r}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"token file {path!r} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise ConfigurationError(
                f"permissions {mode:04o} for token file {path!r} are too open: it holds API "
                f"tokens and must not be accessible by group or others (chmod 600 {path})"
            )
        data = handle.read(_MAX_TOKEN_FILE + 1)
    if len(data) > _MAX_TOKEN_FILE:
        raise ConfigurationError(f"token file {path!r} is too large to be a token file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigurationError(f"token file {path!r} is not UTF-8 text") from None
    return _parse_token_file(text, path)


def _parse_token_file(text: str, path: str) -> TokenFile:
    settings: dict[str, str] = {}
    bare: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            bare.append(line)
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key = key.strip()
        if key not in _KEYS:
            raise ConfigurationError(
                f"token file {path!r}, line {number}: unknown setting {key[:40]!r} "
                f"(expected {', '.join(_KEYS)})"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        settings[_KEYS[key]] = value
    if bare and (settings or len(bare) > 1):
        raise ConfigurationError(
            f"token file {path!r}: expected KEY=value lines or one bare token, not both"
        )
    token = bare[0] if bare else None
    if token is not None and any(c.isspace() for c in token):
        raise ConfigurationError(f"token file {path!r}: a token cannot contain spaces")
    return TokenFile(settings, token)


def make_client(
    args: argparse.Namespace, need: Need | None, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> Conduit:
    """A `Conduit` from the global options, the token file and the environment.

    A bare token in the token file is the one the command `need`s. A missing
    required token is reported before anything is read or sent.
    """
    found: dict[str, str] = {}
    if args.token_file:
        tokens = read_token_file(args.token_file)
        found.update(tokens.settings)
        if tokens.bare is not None:
            found["link_token" if need == "link" else "token"] = tokens.bare
    token = found.get("token") or os.environ.get("CONDUIT_TOKEN") or None
    link_token = found.get("link_token") or os.environ.get("CONDUIT_LINK_TOKEN") or None
    if need == "org" and not token:
        raise ConfigurationError(
            "no organization token: set CONDUIT_TOKEN or give --token-file "
            "(a file with CONDUIT_TOKEN=..., mode 600)"
        )
    if need == "link" and not link_token:
        raise ConfigurationError(
            "no Link APP token: set CONDUIT_LINK_TOKEN or give --token-file "
            "(a file with CONDUIT_LINK_TOKEN=..., mode 600)"
        )
    return Conduit(
        token,
        link_token,
        base_url=args.base_url or found.get("base_url"),
        link_base_url=args.link_base_url or found.get("link_base_url"),
        timeout=args.timeout,
        allow_insecure=args.allow_insecure,
        max_connections=max_connections,
    )
