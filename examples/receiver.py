"""A minimal receiver of tgrelay events, to copy into your own app.

It verifies each POST's Standard Webhooks signature, handles each webhook-id once (tgrelay
retries until it sees a 2xx, so the same message can arrive again) and answers at once.

Install and run (Python 3.11+, no tgrelay needed):

    pip install standardwebhooks starlette uvicorn
    export TGRELAY_WEBHOOK_SECRET=whsec_...   # the endpoint's secret, shown when you add it
    export RECEIVER_DB=receiver.db             # where seen webhook-ids are kept (the default)
    uvicorn examples.receiver:app --port 9000  # or: python examples/receiver.py

then add http://<this host>:9000/webhooks/tgrelay as an endpoint in tgrelay.

tgrelay calls only public addresses unless told otherwise, so a receiver on the same machine
(http://127.0.0.1:9000/webhooks/tgrelay, where `python examples/receiver.py` listens) or on
your network is refused as "a loopback address" or "a private address". Start tgrelay with
one of these to allow it:

    TGRELAY_WEBHOOKS_ALLOW_PRIVATE=true tgrelay serve                  # every private address
    TGRELAY_WEBHOOKS_ALLOWED_NETWORKS=127.0.0.1/32 tgrelay serve       # only these networks
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import closing
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger("receiver")


def create_app(secret: str, db_path: str) -> Starlette:
    """The receiver: POST /webhooks/tgrelay, verified with `secret`, deduplicated in `db_path`."""
    webhook = Webhook(secret)
    with closing(sqlite3.connect(db_path)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS seen (webhook_id TEXT PRIMARY KEY)")

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            # Verifies the signature over the exact bytes received, and that the timestamp is
            # within 5 minutes of now (which refuses replays of old messages).
            event = webhook.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError):  # ValueError: garbled header or body
            return JSONResponse({"error": "invalid signature"}, status_code=400)
        # webhook-id stays the same on every retry and replay of one message: dedupe on it.
        is_new = await run_in_threadpool(record, request.headers["webhook-id"], event)
        return JSONResponse({"duplicate": not is_new})

    def record(webhook_id: str, event: dict[str, Any]) -> bool:
        """Handle the event unless its webhook-id was seen; True when it was new."""
        # `with db` commits on success and rolls back on an exception.
        with closing(sqlite3.connect(db_path)) as db, db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO seen (webhook_id) VALUES (?)", (webhook_id,)
            ).rowcount
            if inserted:
                handle(event)
            else:
                log.info("duplicate webhook-id=%s", webhook_id)
        # If handle() raised, the row was rolled back, we answered 500, and tgrelay retries.
        return bool(inserted)

    return Starlette(routes=[Route("/webhooks/tgrelay", receive, methods=["POST"])])


def handle(event: dict[str, Any]) -> None:
    """Your code goes here. Keep it quick: queue slow work and answer within a few seconds."""
    log.info("event %s type=%s workspace=%s", event["id"], event["type"], event["workspace_id"])


def _app_from_environment() -> Starlette:
    secret = os.environ.get("TGRELAY_WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("set TGRELAY_WEBHOOK_SECRET to the endpoint's whsec_... secret")
    return create_app(secret, os.environ.get("RECEIVER_DB", "receiver.db"))


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
app = _app_from_environment()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=9000)
