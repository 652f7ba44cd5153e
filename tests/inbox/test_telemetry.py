"""Processing lag (stored → processed) is observed once a batch's transaction commits, and
never for a batch that rolls back (it runs again and is observed then)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tgrelay.inbox import processing, telemetry
from tgrelay.inbox.models import ProcessedUpdate
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.clock import Clock

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(_env_file=None, data_dir=tmp_path, log_level="WARNING")
    async with open_runtime(settings, clock=Clock(start=T0)) as runtime:
        yield runtime


def _update(update_id: int, stored_seconds_ago: float) -> ProcessedUpdate:
    payload = orjson.dumps({"update_id": update_id, "poll": {"id": "1"}}).decode()
    return processing.interpret(
        7,
        payload,
        row_id=update_id,
        received_at=T0 - timedelta(seconds=stored_seconds_ago),
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )


async def test_lag_is_observed_after_the_commit_only(rt: Runtime) -> None:
    """A rolled-back batch adds nothing; a committed one adds each update's lag."""

    class Undone(Exception):
        pass

    async def process_then_fail() -> None:
        async with rt.db.transaction() as conn:
            telemetry.after_processing(conn, rt, [_update(1, 2.0)])
            raise Undone

    with pytest.raises(Undone):
        await process_then_fail()
    sample = rt.metrics.registry.get_sample_value
    undone = (
        sample("tgrelay_processing_lag_seconds_count"),
        sample("tgrelay_processing_lag_seconds_sum"),
    )

    async with rt.db.transaction() as conn:
        telemetry.after_processing(conn, rt, [_update(1, 2.0), _update(2, 0.5)])
        inside = sample("tgrelay_processing_lag_seconds_count")
    assert (undone, inside) == ((0.0, 0.0), 0.0)
    assert (
        sample("tgrelay_processing_lag_seconds_count"),
        sample("tgrelay_processing_lag_seconds_sum"),
        sample("tgrelay_processing_lag_seconds_bucket", {"le": "1.0"}),
    ) == (2.0, 2.5, 1.0)
