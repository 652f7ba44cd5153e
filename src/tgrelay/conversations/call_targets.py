"""Which secret signs a flow's calls: the workspace's endpoint of the same origin.

A call step names a URL, not a secret. The team already holds one secret per endpoint
(`whsec_…`, shown once), and verifies events with it; a call to the same app (the same
scheme://host:port) is signed with that endpoint's current secret, so the app verifies
both with one key. A flow whose call has no such endpoint cannot be signed: POST /v1/flows
refuses it with these problems (422, registry.post_flow), and at run time such a call fails at once,
unsent (`jobs.NO_ENDPOINT`), taking the step's on_failure.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.conversations.flow import CallStep, Flow
from tgrelay.events import service as events
from tgrelay.runtime import Runtime

NO_ENDPOINT = "no endpoint of this workspace has this origin"


async def unsigned(conn: AsyncConnection, rt: Runtime, workspace_id: str, flow: Flow) -> list[str]:
    """A problem per call step whose URL no enabled endpoint of the workspace shares an
    origin with, pointing at the step's url as the flow checks do."""
    problems = []
    for index, step in enumerate(flow.steps):
        if not isinstance(step, CallStep):
            continue
        if await events.call_secret(conn, rt, workspace_id, step.url) is None:
            problems.append(f'steps[{index}] (id "{step.id}").url: {NO_ENDPOINT}')
    return problems
