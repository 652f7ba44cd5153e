"""Which job each new job follows: the pure part of per-key ordering.

Jobs sharing an ordering key run one at a time, in the order they were enqueued. Rather than
finding a key's oldest unfinished job on every claim (a cost that grew with the backlog),
each new keyed job records its predecessor, the key's newest job when it was enqueued
(`jobs.after_id`), and the key's newest job moves on to it (`job_keys.last_job_id`). A job may
run once its predecessor is finished. Imported by the SQLite writer process too, so it
imports nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def link(
    ids: Sequence[int], keys: Sequence[str | None], last_job_ids: Mapping[str, int]
) -> tuple[list[int | None], dict[str, int]]:
    """Each new job's predecessor, and each key's newest job afterwards.

    `ids` and `keys` describe the new jobs in the order they were enqueued; `last_job_ids`
    holds the newest job of each of their keys that already has one.
    """
    last = dict(last_job_ids)
    after_ids: list[int | None] = []
    for job_id, key in zip(ids, keys, strict=True):
        if key is None:
            after_ids.append(None)
            continue
        after_ids.append(last.get(key))
        last[key] = job_id
    moved = {key: last[key] for key in {key for key in keys if key is not None}}
    return after_ids, moved
