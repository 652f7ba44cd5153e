"""Span export over OTLP/HTTP with the OpenTelemetry SDK (the `otel` extra).

Imported only when TGRELAY_OTEL_ENDPOINT is set (tracing.tracer_for). Spans take their
trace id from the update, not from the SDK: each one's parent is the update's root span,
a remote span context built from the stored trace id, so spans written by different
processes (intake, worker) and at different times join one trace without any of them
keeping a span open.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from tgrelay import tracing

TRACES_PATH = "/v1/traces"

# The (trace id, span id) the next span must take: a root span's, which has no parent to
# take its trace id from (its span id derived from its trace id: tracing.root_span_id).
_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "tgrelay_forced_ids", default=None
)


class _Ids(RandomIdGenerator):
    """Random ids, except a root span's, which are the update's."""

    def generate_trace_id(self) -> int:
        forced = _forced_ids.get()
        return forced[0] if forced is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _forced_ids.get()
        return forced[1] if forced is not None else super().generate_span_id()


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP's traces URL from a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is read."""
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def _parent(trace_id: str) -> Context:
    """A context whose current span is the update's root span, seen as remote."""
    root = trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(tracing.root_span_id(trace_id), 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(root))


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


class OtelTracer:
    """tracing.Tracer over the OpenTelemetry SDK: batched, exported by the SDK's thread."""

    enabled = True

    def __init__(self, endpoint: str, *, service_name: str = "tgrelay") -> None:
        self._provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name}), id_generator=_Ids()
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint)))
        )
        self._tracer = self._provider.get_tracer("tgrelay")

    @contextlib.contextmanager
    def span(
        self, name: str, *, trace_id: str, attributes: tracing.Attributes | None = None
    ) -> Iterator[str]:
        with self._tracer.start_as_current_span(
            name, context=_parent(trace_id), attributes=attributes
        ) as span:
            yield format(span.get_span_context().span_id, "016x")

    def record(
        self,
        name: str,
        *,
        trace_id: str,
        start: datetime,
        end: datetime,
        attributes: tracing.Attributes | None = None,
        root: bool = False,
    ) -> None:
        if root:
            ids = (int(trace_id, 16), int(tracing.root_span_id(trace_id), 16))
            token = _forced_ids.set(ids)
            try:
                # An empty context: no parent, so the SDK asks _Ids for both ids.
                span = self._tracer.start_span(
                    name, context=Context(), attributes=attributes, start_time=_nanos(start)
                )
            finally:
                _forced_ids.reset(token)
        else:
            span = self._tracer.start_span(
                name, context=_parent(trace_id), attributes=attributes, start_time=_nanos(start)
            )
        span.end(end_time=_nanos(end))

    def shutdown(self) -> None:
        self._provider.shutdown()  # flushes the batch processor first
