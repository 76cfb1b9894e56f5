"""Helpers for the SDK core's unit tests: a virtual clock, a recording aioresponses,
a client factory and JSON payloads shaped like the spec's examples.

Imported by `test_models.py`, `test_errors.py`, `test_retry.py` and `test_client.py`.
Nothing here waits for real: the retry policy sleeps on the virtual clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import attrs
from aioresponses import aioresponses
from aioresponses.compat import merge_params, normalize_url

from conduit_async import Conduit, RetryPolicy

V2 = "https://api.test/v2/"
LINK = "https://api.test/link/"
ORG_TOKEN = "org-SECRET-7f3a9c"
LINK_TOKEN = "link-SECRET-4b8e21"
#: The virtual clock's start (2023-11-14T22:13:20Z), in Unix seconds.
T0 = 1_700_000_000.0


class VirtualTime:
    """A clock for `Conduit(clock=...)` whose `sleep` records the delay and advances time."""

    def __init__(self, start: float = T0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def http_date(self, offset: float = 0.0) -> str:
        """An HTTP date (RFC 9110 IMF-fixdate) `offset` seconds from now."""
        return format_datetime(
            datetime.fromtimestamp(self.now + offset, tz=timezone.utc), usegmt=True
        )


@attrs.frozen
class Sent:
    """One request as the SDK handed it to aiohttp."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    session: aiohttp.ClientSession

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization")
        if auth is None:
            return None
        assert auth.startswith("Bearer "), auth
        return auth[len("Bearer ") :]

    @property
    def json(self) -> Any:
        return None if self.body is None else json.loads(self.body)


class _MockResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14, whose `ClientResponse` requires a
    `stream_writer` (read only for its `output_size` once the request is sent)."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


class Recorder(aioresponses):
    """aioresponses that also keeps every request in order, in `sent`."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []

    def add(self, url: Any, method: str = "GET", **kwargs: Any) -> None:
        kwargs.setdefault("response_class", _MockResponse)
        super().add(url, method, **kwargs)

    async def _request_mock(
        self, orig_self: aiohttp.ClientSession, method: str, url: Any, *args: Any, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        full = normalize_url(merge_params(orig_self._build_url(url), kwargs.get("params")))
        self.sent.append(
            Sent(
                method=method,
                url=str(full),
                headers=dict(kwargs.get("headers") or {}),
                body=kwargs.get("data"),
                session=orig_self,
            )
        )
        return await super()._request_mock(orig_self, method, url, *args, **kwargs)

    def calls(self, method: str, url: str) -> list[Sent]:
        return [s for s in self.sent if s.method == method and s.url == url]


def make_conduit(vt: VirtualTime, **overrides: Any) -> Conduit:
    """A client against the mocked base URLs; retries sleep on `vt` with jitter fixed at 0.5."""
    kwargs: dict[str, Any] = {
        "token": ORG_TOKEN,
        "link_token": LINK_TOKEN,
        "base_url": V2,
        "link_base_url": LINK,
        "clock": vt,
        "retry": RetryPolicy(sleep=vt.sleep, jitter=lambda: 0.5),
        "seed": 7,
    }
    kwargs.update(overrides)
    return Conduit(**kwargs)


def company_json(
    cid: str = "acme1",
    *,
    name: str | None = "Acme",
    token: str = "company-SECRET-1",
    expires_at: float = T0 + 600,
    page_enabled: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": cid,
        "name": name,
        "created_at": "2023-03-15T12:34:56Z",
        "link_page": {
            "url": f"https://link.test/{cid}" if page_enabled else None,
            "enabled": page_enabled,
        },
        "api_token": {"token": token, "expires_at": expires_at},
        **extra,
    }


def workspace_json(
    wid: int, token: str, *, ext_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    return {"id": wid, "ext_id": ext_id, "name": name or f"Workspace {wid}", "token": token}
