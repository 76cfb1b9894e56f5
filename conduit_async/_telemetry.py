"""OpenTelemetry, when it is installed (the `otel` extra): a span per SDK call, and
counters of the token broker's work.

OpenTelemetry is imported only here, and only when a client is made with
telemetry on, so the SDK costs nothing more without the extra. Spans are
named after the endpoint template (`GET /link/company/{cid}/`), never a raw
id, and carry no token.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .errors import APIStatusError, ConfigurationError

if TYPE_CHECKING:
    from .routes import Route

__all__ = ["CallRecord", "Telemetry", "telemetry"]

_EXTRA = 'pip install "conduit-async[otel]"'


class CallRecord:
    """What the session learned about one call, for its span."""

    __slots__ = ("attempts", "status")

    def __init__(self) -> None:
        self.attempts = 0
        self.status: int | None = None


class Telemetry:
    """Spans for calls; observable counters over a stats source."""

    def __init__(self, tracer: Any, trace_api: Any) -> None:
        self._tracer = tracer
        self._trace = trace_api

    def span(self, route: Route[Any]) -> Any:
        """A context manager: the span of one SDK call of `route`."""
        return self._tracer.start_as_current_span(
            route.endpoint,
            kind=self._trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": route.method,
                "url.template": f"/{route.api}/{route.path}",
                "conduit.api": route.api,
            },
        )

    def finish(self, span: Any, record: CallRecord, error: BaseException | None) -> None:
        """Put what the call came to on its span."""
        span.set_attribute("conduit.attempts", record.attempts)
        span.set_attribute("conduit.retries", max(0, record.attempts - 1))
        status = record.status
        if isinstance(error, APIStatusError):
            status = error.status
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, type(error).__name__))

    def count(self, owner: object, counters: dict[str, Callable[[Any], int]]) -> None:
        """Observable counters summed over every live `owner` (held weakly: a dropped
        client stops counting instead of being kept alive by the meter)."""
        _COUNTED.add(owner)
        if _REGISTERED:
            return
        from opentelemetry import metrics

        meter = metrics.get_meter("conduit_async")
        for name, read in counters.items():

            def observe(_: Any, read: Callable[[Any], int] = read) -> Iterable[Any]:
                return [metrics.Observation(sum(read(owner) for owner in list(_COUNTED)))]

            meter.create_observable_counter(name, callbacks=[observe])
        _REGISTERED.append(True)


#: Every live owner of counters, and whether the instruments exist (once per process:
#: instruments are named, and a second registration of a name would be refused).
_COUNTED: weakref.WeakSet[Any] = weakref.WeakSet()
_REGISTERED: list[bool] = []


def telemetry(enabled: bool | None, tracer_provider: Any = None) -> Telemetry | None:
    """Telemetry for a client: on when asked (`True`, or a `tracer_provider` given), off
    with `False`. By default (`None`) on when OpenTelemetry is installed and the
    application has set a tracer provider: a span that goes nowhere still costs about
    a twentieth of a request's client-side work, so none is made for nobody."""
    if enabled is False:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        if enabled or tracer_provider is not None:
            raise ConfigurationError(f"telemetry needs OpenTelemetry: {_EXTRA}") from None
        return None
    if (
        enabled is None
        and tracer_provider is None
        and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    ):
        return None  # no provider set: every span would be dropped
    from . import __version__

    tracer = trace.get_tracer("conduit_async", __version__, tracer_provider=tracer_provider)
    return Telemetry(tracer, trace)
