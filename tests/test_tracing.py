"""Trace ids and their binding (tgrelay.tracing), and span export over OTLP/HTTP to an
in-process collector (tgrelay.tracing_otel)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tests.log_fields import log_fields
from tests.otlp_collector import collecting
from tgrelay import errors, observability, tracing
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_trace_and_span_ids_are_random_w3c_hex() -> None:
    """A trace id is 32 lowercase hex digits, a span id 16, each fresh."""
    traces = {tracing.new_trace_id() for _ in range(100)}
    spans = {tracing.new_span_id() for _ in range(100)}
    assert len(traces) == len(spans) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in traces)
    assert all(re.fullmatch(r"[0-9a-f]{16}", s) for s in spans)


def test_traceparent_is_the_w3c_header() -> None:
    """Version 00, the trace id, the span id, sampled."""
    assert tracing.traceparent(TRACE, "00f067aa0ba902b7") == (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    )


def test_root_span_id_is_derived_from_the_trace_and_never_zero() -> None:
    """Later spans name the root as parent without storing its id; an all-zero id is invalid."""
    assert tracing.root_span_id(TRACE) == "4bf92f3577b34da6"
    assert tracing.root_span_id("0" * 16 + "f" * 16) == "0000000000000001"


def test_bound_makes_the_trace_current_and_a_log_field_for_the_block() -> None:
    """Inside `bound` the trace is current and in the log context; after it, neither."""
    with tracing.bound(TRACE):
        inside = (tracing.current_trace_id(), log_fields())
    after = (tracing.current_trace_id(), log_fields())
    assert inside == (TRACE, {"trace_id": TRACE})
    assert after == (None, {})


def test_bound_none_binds_nothing() -> None:
    """Work no update caused runs without a trace."""
    with tracing.bound(None):
        assert (tracing.current_trace_id(), log_fields()) == (None, {})


def test_a_batch_of_one_trace_binds_it_and_of_several_lists_them() -> None:
    """A batch of several traces names them all in its logs and has no current trace."""
    other = "0af7651916cd43dd8448eb211c80319c"
    with tracing.bound_many([TRACE, None, TRACE]):
        one = (tracing.current_trace_id(), log_fields())
    with tracing.bound_many([TRACE, other, TRACE]):
        several = (tracing.current_trace_id(), log_fields())
    assert one == (TRACE, {"trace_id": TRACE})
    assert several == (None, {"trace_ids": [TRACE, other]})


def test_without_an_endpoint_spans_go_nowhere_but_still_have_ids() -> None:
    """NO_TRACER is disabled; its span still yields an id for `traceparent`."""
    tracer = tracing.tracer_for(None)
    with tracer.span("delivery.attempt", trace_id=TRACE) as span_id:
        pass
    assert (tracer.enabled, bool(re.fullmatch(r"[0-9a-f]{16}", span_id))) == (False, True)


def test_spans_reach_a_collector_in_the_updates_trace() -> None:
    """The root span takes the derived id; the others hang off it, all in the update's trace."""
    with collecting() as collector:
        tracer = tracing.tracer_for(collector.url, service_name="tgrelay-test")
        assert tracer.enabled
        tracer.record(
            "update.stored",
            trace_id=TRACE,
            start=T0,
            end=T0 + timedelta(milliseconds=3),
            attributes={"bot_id": 42},
            root=True,
        )
        with tracer.span("delivery.attempt", trace_id=TRACE, attributes={"n": 1}) as span_id:
            pass
        tracer.shutdown()  # flushes the batch to the collector

    root = tracing.root_span_id(TRACE)
    assert collector.paths == ["/v1/traces"]
    assert sorted(
        (s.name, s.trace_id, s.span_id, s.parent_span_id, s.attributes, s.service_name)
        for s in collector.spans
    ) == [
        ("delivery.attempt", TRACE, span_id, root, {"n": 1}, "tgrelay-test"),
        ("update.stored", TRACE, root, "", {"bot_id": 42}, "tgrelay-test"),
    ]


def _without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports of the SDK fail, as where the `otel` extra is not installed."""
    for name in [*sys.modules, "opentelemetry.sdk", "opentelemetry.exporter"]:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "tgrelay.tracing_otel", raising=False)


def test_otel_endpoint_without_the_extra_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TGRELAY_OTEL_ENDPOINT set without the `otel` extra: a clear error, before anything opens."""
    _without_opentelemetry(monkeypatch)
    with pytest.raises(errors.ConfigurationError) as caught:
        tracing.tracer_for("http://127.0.0.1:4318")
    assert caught.value.message == tracing.OTEL_EXTRA_MISSING


async def test_open_runtime_refuses_export_without_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime (every command's start) raises the error and creates no database."""
    _without_opentelemetry(monkeypatch)
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        secret_keys=(SecretStr(Fernet.generate_key().decode()),),
        otel_endpoint="http://127.0.0.1:4318",
    )
    with pytest.raises(errors.ConfigurationError, match="otel"):
        async with open_runtime(settings):
            pass
    assert not (tmp_path / "data").exists()


def test_otel_endpoint_must_be_an_http_url() -> None:
    """A typo in TGRELAY_OTEL_ENDPOINT is refused when settings load."""
    with pytest.raises(ValueError, match="otel_endpoint"):
        Settings(_env_file=None, otel_endpoint="collector:4318")


def test_log_lines_written_in_a_trace_carry_its_id() -> None:
    """With tgrelay's logging set up, a line logged inside `bound` has the `trace_id` field."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    stream = io.StringIO()
    observability.configure_logging("INFO", stream=stream)
    try:
        log = structlog.get_logger("tgrelay.test")
        with tracing.bound(TRACE):
            log.info("job.step", step=1)
        log.info("job.step", step=2)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        structlog.configure(**saved[2])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["step"], line.get("trace_id")) for line in lines] == [(1, TRACE), (2, None)]
