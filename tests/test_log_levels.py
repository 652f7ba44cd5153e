"""A structlog line below the configured level is dropped before any processor runs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tgrelay import observability, tracing


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    try:
        yield
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        structlog.configure(**saved[2])


def test_a_line_below_the_level_runs_no_processor(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    processed: list[str] = []

    def noted(logger: Any, name: str, event: Any) -> Any:
        processed.append(event["event"])
        return event

    monkeypatch.setattr(tracing, "add_trace_id", noted)  # one of the shared processors
    stream = io.StringIO()
    observability.configure_logging("INFO", stream=stream)
    log = structlog.get_logger("tgrelay.test")
    log.debug("job.done", job_id=1)
    log.info("job.started", job_id=2)
    assert processed == ["job.started"]
    assert "job.started" in stream.getvalue()
    assert "job.done" not in stream.getvalue()
