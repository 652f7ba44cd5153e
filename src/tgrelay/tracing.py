"""Traces from update to delivery: trace ids, the one in force, W3C `traceparent`, spans.

An update gets a random trace id when it is stored (inbox.writer). Its row, its
process_update job, every job and event its processing writes (queue.store and
events.service read `current_trace_id()`), and every delivery of those events carry it.
The worker binds a job's trace id around its run (`bound`), which also puts it in every log
line on the way (structlog contextvars). Deliveries send it as `traceparent`.

Spans are optional: without TGRELAY_OTEL_ENDPOINT the tracer is `NO_TRACER`, which costs a
random span id per delivery and nothing else. With it, `tgrelay.tracing_otel` (the `otel`
extra) exports a few spans per update over OTLP/HTTP.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog

from tgrelay import errors

TRACE_ID_HEX = 32  # W3C trace-id: 16 bytes
SPAN_ID_HEX = 16  # W3C parent-id: 8 bytes
TRACEPARENT = "traceparent"
OTEL_EXTRA_MISSING = (
    "TGRELAY_OTEL_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
    "install tgrelay with the `otel` extra (e.g. `pip install 'tgrelay[otel]'`), "
    "or unset TGRELAY_OTEL_ENDPOINT"
)

Attributes = Mapping[str, str | int | float | bool]

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tgrelay_trace_id", default=None
)


def new_trace_id() -> str:
    """A random W3C trace id: 32 lowercase hex digits (os.urandom: ~0.3 µs, no lock)."""
    return os.urandom(16).hex()


def new_trace_ids(count: int) -> list[str]:
    """`count` random trace ids from one os.urandom call: the intake gives a batch's updates
    theirs at once (a call each cost ~0.9 µs per update on this machine, 10 % of the
    intake's own per-update work; slicing one draw costs a tenth of that)."""
    drawn = os.urandom(16 * count).hex()
    return [drawn[start : start + TRACE_ID_HEX] for start in range(0, len(drawn), TRACE_ID_HEX)]


def new_span_id() -> str:
    return os.urandom(8).hex()


def root_span_id(trace_id: str) -> str:
    """The span id of an update's first span ("update.stored"), derived from its trace id,
    so that every later span can name it as parent without storing it anywhere."""
    # The trace id is random: its first half is as good as a fresh id (all-zero is invalid).
    head = trace_id[:SPAN_ID_HEX]
    return head if head.strip("0") else "1".rjust(SPAN_ID_HEX, "0")


def traceparent(trace_id: str, span_id: str) -> str:
    """The W3C Trace Context header value: version 00, sampled."""
    return f"00-{trace_id}-{span_id}-01"


def current_trace_id() -> str | None:
    """The trace id of the work this task is doing (bound by the worker), if any."""
    return _current.get()


@contextlib.contextmanager
def bound(trace_id: str | None) -> Iterator[None]:
    """Make `trace_id` the current one, for the block: every log line in it carries it
    (`add_trace_id`, a processor of observability's logging).

    None binds nothing: work no update caused (an API call, a periodic task) has no trace.
    Only our own context variable is set: processing binds each update of a batch in turn,
    and structlog's bound_contextvars (a copy of every bound variable each time) cost ~2 % of
    processing's CPU there.
    """
    if trace_id is None:
        yield
        return
    token = _current.set(trace_id)
    try:
        yield
    finally:
        _current.reset(token)


def add_trace_id(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the current trace id as the log line's `trace_id`."""
    trace_id = _current.get()
    if trace_id is not None:
        event.setdefault("trace_id", trace_id)
    return event


@contextlib.contextmanager
def bound_many(trace_ids: Sequence[str | None]) -> Iterator[None]:
    """`bound` for a batch of jobs run together: its one trace id, or the list of them.

    A batch of several traces has no current trace id (what it writes would belong to one
    of them, not all): the code that handles one item at a time binds that item's
    (inbox.models.Handler.each, inbox.announcements). The log lines of the batch name all of
    them.
    """
    distinct = list(dict.fromkeys(trace_id for trace_id in trace_ids if trace_id is not None))
    if len(distinct) <= 1:
        with bound(distinct[0] if distinct else None):
            yield
        return
    with structlog.contextvars.bound_contextvars(trace_ids=distinct):
        yield


class Tracer(Protocol):
    """Where spans go. Spans carry the update's trace id and hang off its root span."""

    @property
    def enabled(self) -> bool:
        """False when spans go nowhere: callers skip the work of describing them."""
        ...

    def span(
        self, name: str, *, trace_id: str, attributes: Attributes | None = None
    ) -> contextlib.AbstractContextManager[str]:
        """A span around the block; yields its span id (for a `traceparent` header)."""
        ...

    def record(
        self,
        name: str,
        *,
        trace_id: str,
        start: datetime,
        end: datetime,
        attributes: Attributes | None = None,
        root: bool = False,
    ) -> None:
        """A span that already happened (e.g. stored → processed); `root`: the update's
        first span, with the id `root_span_id(trace_id)`."""
        ...

    def shutdown(self) -> None:
        """Export what is buffered and stop."""
        ...


class _NoTracer:
    """Spans go nowhere; a span still has an id, which `traceparent` needs."""

    enabled = False

    @contextlib.contextmanager
    def span(
        self, name: str, *, trace_id: str, attributes: Attributes | None = None
    ) -> Iterator[str]:
        yield new_span_id()

    def record(
        self,
        name: str,
        *,
        trace_id: str,
        start: datetime,
        end: datetime,
        attributes: Attributes | None = None,
        root: bool = False,
    ) -> None:
        return None

    def shutdown(self) -> None:
        return None


NO_TRACER: Tracer = _NoTracer()


def check_export(endpoint: str | None) -> None:
    """ConfigurationError when export is asked for and the `otel` extra is not installed:
    said at start (`tgrelay serve` asks before uvicorn starts), not at the first span."""
    if endpoint is not None:
        _otel()


def tracer_for(endpoint: str | None, *, service_name: str = "tgrelay") -> Tracer:
    """The tracer the settings ask for (see `check_export` for the error it may raise)."""
    if endpoint is None:
        return NO_TRACER
    tracer: Tracer = _otel().OtelTracer(endpoint, service_name=service_name)
    return tracer


def _otel() -> Any:
    try:
        return importlib.import_module("tgrelay.tracing_otel")
    except ImportError as exc:
        raise errors.ConfigurationError(OTEL_EXTRA_MISSING) from exc
