"""One /metrics for the serving process and its webhooks lane child.

Counters and histograms add up across the two (a delivery counted in the child is counted
once, there). Gauges are the serving process's alone: it reads each from the database at
scrape time (jobs, queue depths, open breakers, tickets), or sets it from work it does itself
(pollers, Telegram breakers), so the child's copies would only double them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

ADDITIVE = frozenset({"counter", "histogram", "summary"})


class Merged(Collector):
    """What generate_latest reads: `own` families, with `other`'s additive samples added."""

    def __init__(self, own: Collector, other: Iterable[Any]) -> None:
        self._own = own
        self._other = {family.name: family for family in other if family.type in ADDITIVE}

    def collect(self) -> Iterator[Metric]:
        for family in self._own.collect():
            extra = self._other.get(family.name)
            if extra is None or extra.type != family.type:
                yield family
                continue
            merged = Metric(family.name, family.documentation, family.type, family.unit)
            merged.samples = _added(family.samples, extra.samples)
            yield merged


def _added(own: list[Sample], other: list[Sample]) -> list[Sample]:
    def key(sample: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
        return sample.name, tuple(sorted(sample.labels.items()))

    theirs = {key(sample): sample for sample in other}
    added: list[Sample] = []
    for sample in own:
        match = theirs.pop(key(sample), None)
        if match is None:
            added.append(sample)
        elif sample.name.endswith("_created"):  # a start time, not a count: the earlier
            added.append(sample._replace(value=min(sample.value, match.value)))
        else:
            added.append(sample._replace(value=sample.value + match.value))
    # Label sets only the child has seen (a histogram's buckets come whole, in order).
    added.extend(theirs.values())
    return added
