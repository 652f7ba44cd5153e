"""Structured logs (JSON via structlog, bot tokens redacted everywhere) and Prometheus metrics."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from tgrelay import crypto, tracing

# Loggers of libraries that could print a URL with a bot token in it (/bot<token>/method).
THIRD_PARTY_LOGGERS = ("aiogram", "aiohttp", "httpx", "httpcore", "uvicorn", "asyncio")


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace bot tokens in every string field by their fingerprints."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = crypto.redact_tokens(value)
        elif not isinstance(value, int | float | bool | None):
            event[key] = crypto.redact_tokens(str(value))
    return event


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging (aiogram, aiohttp, httpx, uvicorn) to JSON lines.

    Redaction runs last, on the rendered fields, so a token cannot slip through any logger.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        tracing.add_trace_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            # First: a line below the level costs a lookup, not the chain (timestamp and
            # all), which the stdlib logger would drop at the end (a debug line per job).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # uvicorn's access log repeats every webhook request (our metrics count them instead);
    # alembic narrates every start's no-op migration check.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass
class Metrics:
    """Every Prometheus metric tgrelay exports, on a registry of its own (one per app)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # process_cpu_seconds_total, resident memory, open fds: what capacity is read from
        # (docs/scaling.md). Under `serve`, the webhooks lane child's CPU seconds are added in.
        ProcessCollector(registry=r)
        self.updates_received = Counter(
            "tgrelay_updates_received",
            "Updates that reached the intake, by source (webhook/polling) and outcome.",
            ["source", "outcome"],
            registry=r,
        )
        self.updates_kept_back = Counter(
            "tgrelay_updates_kept_back",
            "Stored updates not given to the domain handlers, by bot and disposition "
            "(throttled: over TGRELAY_INBOUND_CHAT_LIMIT; duplicate: a message seen before).",
            ["bot_id", "disposition"],
            registry=r,
        )
        self.intake_latency = Histogram(
            "tgrelay_intake_latency_seconds",
            "From request start to durable commit of a webhook update.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.jobs = Gauge("tgrelay_jobs", "Jobs in the queue by state.", ["state"], registry=r)
        self.job_runs = Histogram(
            "tgrelay_job_run_seconds",
            "Job handler run time, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.telegram_calls = Counter(
            "tgrelay_telegram_api_calls",
            "Bot API calls by method and outcome.",
            ["method", "outcome"],
            registry=r,
        )
        self.telegram_flood_waits = Counter(
            "tgrelay_telegram_flood_waits",
            "Bot API calls Telegram answered with 429 (retry_after), by method.",
            ["method"],
            registry=r,
        )
        self.telegram_turn_wait = Histogram(
            "tgrelay_telegram_turn_wait_seconds",
            "Time a send waited for its rate-limit turn before its request.",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60),
            registry=r,
        )
        self.support_relay = Histogram(
            "tgrelay_support_relay_seconds",
            "From a ticket message's storing to Telegram accepting its relay (either way).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300),
            registry=r,
        )
        self.support_deflections = Counter(
            "tgrelay_support_deflections",
            "Tickets an auto-answered article resolved: the customer said it answered them.",
            registry=r,
        )
        self.support_auto_answers = Counter(
            "tgrelay_support_auto_answers",
            "Auto-answers by what became of them: waiting (sent), deflected, declined, timed_out.",
            ["outcome"],
            registry=r,
        )
        self.support_live_tickets = Gauge(
            "tgrelay_support_tickets",
            "Live tickets (new, open, pending) per desk and status, counted at scrape time.",
            ["desk_id", "status"],
            registry=r,
        )
        self.support_sla_breaches = Gauge(
            "tgrelay_support_sla_breaches",
            "SLA breaches ever recorded per desk and metric, counted at scrape time.",
            ["desk_id", "metric"],
            registry=r,
        )
        self.support_auto_answer_outcomes = Gauge(
            "tgrelay_support_auto_answer_outcomes",
            "Auto-answered tickets per desk by outcome (waiting, deflected, declined, "
            "timed_out), counted at scrape time.",
            ["desk_id", "outcome"],
            registry=r,
        )
        self.possible_duplicate_sends = Counter(
            "tgrelay_possible_duplicate_sends",
            "Messages sent again after a crash hid whether the first send reached Telegram.",
            registry=r,
        )
        self.telegram_breaker_open = Gauge(
            "tgrelay_telegram_breaker_open",
            "1 while a bot's circuit breaker holds its Bot API calls back (open or probing).",
            ["bot_id"],
            registry=r,
        )
        self.sqlite_write_lock = Histogram(
            "tgrelay_sqlite_write_lock_seconds",
            "How long each write transaction held SQLite's one write lock, by writer: the "
            "intake's writer child (intake), a queue's worker (updates, default, webhooks), "
            "the pruner (retention), or the API's and other transactions (transactions). The "
            "rate of the sums is the share of time the lock is held.",
            ["writer"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=r,
        )
        self.processing_lag = Histogram(
            "tgrelay_processing_lag_seconds",
            "From an update's storing to the commit of its processing (process_update done).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
            registry=r,
        )
        self.delivery_attempts = Counter(
            "tgrelay_delivery_attempts",
            "Event delivery POSTs by outcome (delivered: 2xx; gone: 410; failed: any other "
            "answer or none).",
            ["outcome"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "tgrelay_delivery_latency_seconds",
            "Duration of an event delivery POST, until its answer (or the failure).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
            registry=r,
        )
        self.delivery_dead_letters = Counter(
            "tgrelay_delivery_dead_letters",
            "Deliveries given up (retry schedule exhausted, 410 Gone, endpoint deleted or "
            "disabled).",
            registry=r,
        )
        self.delivery_breakers_open = Gauge(
            "tgrelay_delivery_breakers_open",
            "Endpoints whose circuit breaker holds deliveries back (open or probing), "
            "counted at scrape time.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "tgrelay_queue_depth",
            "Pending jobs that are due, by kind, counted at scrape time.",
            ["kind"],
            registry=r,
        )
        self.queue_oldest_due_age = Gauge(
            "tgrelay_queue_oldest_due_age_seconds",
            "How long the oldest due pending job of each kind has been due, at scrape time.",
            ["kind"],
            registry=r,
        )
        self.poller_lag = Gauge(
            "tgrelay_poller_lag_seconds",
            "Age of the newest update a poller received, when it was received.",
            ["bot_id"],
            registry=r,
        )
