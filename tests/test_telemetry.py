"""OpenTelemetry: a span per SDK call, named after the endpoint template, with retries and
the final status; counters of the token broker's work; nothing without the extra."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from conduit_async import Conduit, NotFoundError
from conduit_async.testing import FakeConduit, Fault, ManualClock

otel_sdk = pytest.importorskip("opentelemetry.sdk", reason="pip install -e '.[test]'")

from opentelemetry import metrics  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

READER = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(
    spans: InMemorySpanExporter, clock: ManualClock
) -> AsyncIterator[tuple[Conduit, FakeConduit]]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    async with FakeConduit(clock=clock) as fake, fake.client(tracer_provider=provider) as conduit:
        yield conduit, fake


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_a_span_per_call_named_by_template_with_retries_and_status(
    traced: tuple[Conduit, FakeConduit], spans: InMemorySpanExporter
) -> None:
    conduit, fake = traced
    company = await conduit.companies.create("acme1", name="Acme")
    fake.faults.script("GET /link/credentials/", [Fault.status(503)])
    await conduit.company("acme1").integrations()
    with pytest.raises(NotFoundError):
        await conduit.company("acme1").connect_url(999)
    done = {s.name: s for s in spans.get_finished_spans()}
    assert set(done) == {
        "POST /link/company/",
        "GET /link/credentials/",
        "GET /link/credentials/connect/{integration_id}/",
    }
    retried = done["GET /link/credentials/"]
    assert retried.attributes is not None
    assert retried.attributes["conduit.retries"] == 1
    assert retried.attributes["http.response.status_code"] == 200
    failed = done["GET /link/credentials/connect/{integration_id}/"]
    assert failed.attributes is not None
    assert failed.attributes["http.response.status_code"] == 404
    assert failed.attributes["error.type"] == "NotFoundError"
    assert not failed.status.is_ok
    token = company.api_token.token
    for span in spans.get_finished_spans():
        text = repr(span.to_json())
        assert token not in text and fake.link_token not in text and "999" not in span.name


async def test_broker_counters_are_observable(traced: tuple[Conduit, FakeConduit]) -> None:
    conduit, fake = traced
    fake.add_company("beta2")
    await conduit.company("beta2").integrations()  # a token fetch
    data = READER.get_metrics_data()
    assert data is not None
    values = {
        metric.name: sum(point.value for point in metric.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    assert values["conduit.token.fetches"] >= 1


def test_nothing_is_imported_without_telemetry() -> None:
    code = (
        "import sys, asyncio\n"
        "from conduit_async import Conduit\n"
        "c = Conduit('t', 'l', telemetry=False)\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), sorted(sys.modules)\n"
        "asyncio.run(c.close())\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


async def test_no_spans_are_made_for_nobody() -> None:
    # OpenTelemetry installed but no tracer provider set: telemetry stays off by default
    # (a dropped span still costs a share of every request), on when asked.
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a global tracer provider is set in this process")
    async with Conduit("t", "l") as quiet, Conduit("t", "l", telemetry=True) as asked:
        assert quiet._session.telemetry is None
        assert asked._session.telemetry is not None
