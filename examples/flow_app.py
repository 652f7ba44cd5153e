"""The app side of examples/flows/billing_address.json: validates and saves billing addresses
for tgrelay's conversation, and receives tgrelay's events.

tgrelay POSTs a `call` step's variables here as JSON signed with Standard Webhooks headers,
using the secret of the workspace's endpoint with the same origin (scheme://host:port): add
this app's /events as an endpoint in tgrelay, and its secret verifies both the events and
the calls. Routes:

    POST /flows/billing-address/validate  {"variables": {street, zip, city, country}, …}
         → {"variables": {"address_ok": true|false, "formatted": "…", "problem": "…"}}
    POST /flows/billing-address/save      → saves the address (in memory), answers {}
    POST /events                          tgrelay's events (conversation.completed, …)
    GET  /addresses                       what was saved, by Telegram user id
    GET  /events                          the events received, oldest first

A call is retried with the same webhook-id until it is answered: save keeps the first
answer per id, so a retry never saves twice. Run it (Python 3.11+, no tgrelay needed):

    pip install standardwebhooks starlette uvicorn
    python examples/flow_app.py --port 8765 --secret whsec_...   # the endpoint's secret

and start tgrelay with TGRELAY_WEBHOOKS_ALLOW_PRIVATE=true (the app is on loopback).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# Postal codes by country (ISO 3166 alpha-2), as each country's post writes them.
POSTAL_CODES = {
    "DE": re.compile(r"[0-9]{5}"),
    "FR": re.compile(r"[0-9]{5}"),
    "GB": re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}"),
    "US": re.compile(r"[0-9]{5}(-[0-9]{4})?"),
}
COUNTRIES = {"DE": "Germany", "FR": "France", "GB": "United Kingdom", "US": "United States"}
FIELDS = ("street", "zip", "city", "country")


@dataclass
class Books:
    """What the app keeps, in memory: saved addresses, answers by webhook-id, events."""

    addresses: dict[int, dict[str, str]] = field(default_factory=dict)  # by Telegram user id
    answered: dict[str, dict[str, Any]] = field(default_factory=dict)  # by webhook-id
    events: list[dict[str, Any]] = field(default_factory=list)


def validate(address: dict[str, Any]) -> dict[str, Any]:
    """The variables the flow's `validate` step sets: address_ok, formatted and problem."""
    missing = [name for name in FIELDS if not str(address.get(name) or "").strip()]
    if missing:
        return {"address_ok": False, "formatted": "", "problem": f"{missing[0]} is missing"}
    country = str(address["country"]).upper()
    rule = POSTAL_CODES.get(country)
    if rule is None:
        return {"address_ok": False, "formatted": "", "problem": f"we do not ship to {country}"}
    postal_code = str(address["zip"]).strip().upper()
    if rule.fullmatch(postal_code) is None:
        problem = f"{postal_code} is not a postal code of {COUNTRIES[country]}"
        return {"address_ok": False, "formatted": "", "problem": problem}
    street, city = str(address["street"]).strip(), str(address["city"]).strip()
    formatted = f"{street}\n{postal_code} {city}\n{COUNTRIES[country]}"
    return {"address_ok": True, "formatted": formatted, "problem": ""}


def create_app(secret: str, books: Books | None = None) -> Starlette:
    """The app: every POST verified with `secret` (an endpoint's whsec_…)."""
    webhook = Webhook(secret)
    kept = books if books is not None else Books()

    async def verified(request: Request) -> tuple[str, dict[str, Any]] | JSONResponse:
        body = await request.body()
        try:
            # The signature over the exact bytes, and a timestamp within 5 minutes of now.
            payload = webhook.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError):
            return JSONResponse({"error": "invalid signature"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        return request.headers["webhook-id"], payload

    async def validate_route(request: Request) -> JSONResponse:
        found = await verified(request)
        if isinstance(found, JSONResponse):
            return found
        _, payload = found
        return JSONResponse({"variables": validate(payload.get("variables") or {})})

    async def save_route(request: Request) -> JSONResponse:
        found = await verified(request)
        if isinstance(found, JSONResponse):
            return found
        webhook_id, payload = found
        if webhook_id not in kept.answered:  # a retry of a saved call: answered already
            variables = payload.get("variables") or {}
            user_id = int(payload["user"]["id"])
            kept.addresses[user_id] = {name: str(variables.get(name, "")) for name in FIELDS}
            kept.answered[webhook_id] = {}
        return JSONResponse(kept.answered[webhook_id])

    async def events_route(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse(kept.events)
        found = await verified(request)
        if isinstance(found, JSONResponse):
            return found
        webhook_id, event = found
        if all(earlier.get("id") != event.get("id") for earlier in kept.events):
            kept.events.append(event)
        return JSONResponse({"received": webhook_id})

    async def addresses_route(_request: Request) -> JSONResponse:
        return JSONResponse({str(user_id): a for user_id, a in kept.addresses.items()})

    return Starlette(
        routes=[
            Route("/flows/billing-address/validate", validate_route, methods=["POST"]),
            Route("/flows/billing-address/save", save_route, methods=["POST"]),
            Route("/events", events_route, methods=["GET", "POST"]),
            Route("/addresses", addresses_route, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="The billing-address flow's app.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--secret", required=True, help="the tgrelay endpoint's whsec_… secret")
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(create_app(args.secret), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
