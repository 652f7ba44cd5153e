"""The garbage collector in a long-running process: what lives as long as the process is
kept out of its sight.

A full collection walks every tracked object that is not frozen. `tgrelay serve`, `tgrelay
worker` and the webhooks lane child each hold millions that never die (modules, pydantic
models and schemas, aiogram's types, SQLAlchemy's compiled statements, the runtime). Walked
at every full collection, they made each one a stall of the event loop that every request
and delivery in flight waited through: 20–50 ms in a busy `serve`, 80–130 ms in the lane
child, one every 2–4 s under load (bench/intake.py, bench/e2e.py). Frozen, the same
collections take 1–4 ms. (The freeze before `serve`'s app starts came first: it took
bench/deliveries.py's event-to-delivery p99 at 1,000 events/s from 78–141 ms to 36–43 ms.)
"""

from __future__ import annotations

import gc
import os

import structlog


def freeze() -> None:
    """Collect once, keep every object alive now from the collector's sight, and turn
    collection on (start-up may have turned it off: collecting while importing only walked
    the same objects again)."""
    gc.collect()
    gc.freeze()
    gc.enable()


def freeze_after_start_up() -> None:
    """`freeze`, once a process's start-up is done, and a log line that says so."""
    freeze()
    structlog.get_logger(__name__).info(
        "process.start_up_frozen", frozen_objects=gc.get_freeze_count(), pid=os.getpid()
    )
