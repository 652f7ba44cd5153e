"""serve's /metrics adds its webhooks lane child's counters and histograms to its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tgrelay.lanes.metrics import Merged


def registry() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    r = CollectorRegistry()
    counter = Counter("attempts", "Attempts.", ["outcome"], registry=r)
    gauge = Gauge("jobs", "Jobs.", ["state"], registry=r)
    histogram = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=r)
    return r, counter, gauge, histogram


def exposed(own: CollectorRegistry, child: CollectorRegistry) -> dict[str, float]:
    text = generate_latest(Merged(own, list(child.collect()))).decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_counters_and_histograms_add_up_and_gauges_are_the_serving_process_own() -> None:
    own, own_attempts, own_jobs, own_latency = registry()
    child, child_attempts, child_jobs, child_latency = registry()
    own_attempts.labels("delivered").inc(2)
    child_attempts.labels("delivered").inc(5)
    child_attempts.labels("failed").inc()  # a label set only the child has seen
    own_jobs.labels("pending").set(7)  # read from the database at scrape time
    child_jobs.labels("pending").set(7)
    child_jobs.labels("running").set(3)
    own_latency.observe(0.05)
    child_latency.observe(0.5)

    samples = exposed(own, child)

    assert samples['attempts_total{outcome="delivered"}'] == 7
    assert samples['attempts_total{outcome="failed"}'] == 1
    assert samples['jobs{state="pending"}'] == 7
    assert 'jobs{state="running"}' not in samples
    assert samples['latency_seconds_bucket{le="0.1"}'] == 1
    assert samples['latency_seconds_bucket{le="1.0"}'] == 2
    assert samples["latency_seconds_count"] == 2
    assert samples["latency_seconds_sum"] == 0.55
    # A start time is not a count: the earlier of the two, not their sum.
    own_created = samples['attempts_created{outcome="delivered"}']
    assert own_created <= min(
        exposed(own, CollectorRegistry())['attempts_created{outcome="delivered"}'],
        exposed(child, CollectorRegistry())['attempts_created{outcome="delivered"}'],
    )
    assert own_created > 1_000_000_000


def test_without_a_child_the_exposition_is_the_serving_process_own() -> None:
    own, attempts, _, _ = registry()
    attempts.labels("delivered").inc(3)
    assert generate_latest(Merged(own, [])) == generate_latest(own)
