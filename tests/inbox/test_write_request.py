"""The SQLite writer's batch request: the job rows it copies from a template are the general ones."""

from __future__ import annotations

from tests.inbox.updates import NOW, incoming
from tgrelay import tracing
from tgrelay.inbox import writer
from tgrelay.queue import store as job_store


def test_job_rows_are_those_built_one_by_one() -> None:
    updates = [incoming(7, chat_id=None), incoming(3, chat_id=-100), incoming(3, bot_id=2)]

    traces = tracing.new_trace_ids(len(updates))
    request = writer.write_request(updates, [], now=NOW, default_max_attempts=4, trace_ids=traces)

    one_by_one = writer._INSERT_JOBS.params(
        job_store.job_values(writer._job_for(u, None, t), now=NOW, default_max_attempts=4)
        for u, t in zip(updates, traces, strict=True)
    )
    assert request["jobs"] == one_by_one
    assert [row[writer._JOB_ORDERING_KEY] for row in request["jobs"]] == [
        None,
        "chat:1:-100",
        "chat:2:10",
    ]
    # Rows are copies: filling one job's subject_id must not touch another's.
    assert len({id(row) for row in request["jobs"]}) == len(updates)


def test_an_empty_batch_has_no_jobs() -> None:
    assert writer.write_request([], [], now=NOW, default_max_attempts=4)["jobs"] == []


def test_each_update_and_its_job_get_one_trace_id_of_their_own() -> None:
    """Without given trace ids, each update gets a fresh one, shared with its job's row."""
    updates = [incoming(1), incoming(2), incoming(3)]

    request = writer.write_request(updates, [], now=NOW, default_max_attempts=4)

    on_updates = [
        row[writer._INSERT_UPDATES.columns.index("trace_id")] for row in request["updates"]
    ]
    on_jobs = [row[writer._JOB_TRACE_ID] for row in request["jobs"]]
    assert on_updates == on_jobs
    assert len(set(on_updates)) == 3
    assert all(len(trace) == 32 and int(trace, 16) >= 0 for trace in on_updates)
