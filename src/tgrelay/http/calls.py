"""A signed JSON call to a team's app, for conversation `call` steps: one POST, a typed outcome.

The payload goes as JSON signed with Standard Webhooks headers, exactly as events are signed,
so an app verifies both with one library. The target passes the SSRF guard, redirects are
not followed and at most MAX_ANSWER_BYTES of the answer are read. `classify` judges an
answer; `call` adds the guard, the origin's breaker and the failures without an answer.
Nothing here retries: the caller's durable queue decides, by `Failed.retryable`.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tgrelay import clock
from tgrelay.http import breakers as breakers_
from tgrelay.http import guard, signing, transport

# An answer sets a few variables and names the next step; 64 KiB is far more than that
# needs, and bounds what a call holds in memory.
MAX_ANSWER_BYTES = 64 * 1024
# The prefix of webhook-id when the caller gives no id of its own.
CALL_ID_PREFIX = "call_"


class Reason(enum.StrEnum):
    """Why a call brought no usable answer."""

    TIMEOUT = "timeout"  # no status line within the step's timeout
    UNREACHABLE = "unreachable"  # connection refused or lost, DNS, TLS
    REFUSED = "refused"  # the SSRF guard refused the target; nothing was sent
    BREAKER_OPEN = "breaker_open"  # the origin's recent calls failed; nothing was sent
    SERVER_ERROR = "server_error"  # a 5xx
    RATE_LIMITED = "rate_limited"  # a 429
    REQUEST_TIMEOUT = "request_timeout"  # a 408: the app gave up waiting for our request
    CLIENT_ERROR = "client_error"  # a 4xx other than 408 and 429: the app rejects the call
    REDIRECT = "redirect"  # a 3xx: never followed (the guard judged the URL, not the Location)
    UNEXPECTED_STATUS = "unexpected_status"  # a status outside 200-599
    TOO_LARGE = "too_large"  # a 2xx whose body is over MAX_ANSWER_BYTES
    BODY_BROKEN = "body_broken"  # a 2xx whose body broke off or stalled
    NOT_JSON = "not_json"  # a 2xx whose body is not JSON
    NOT_OBJECT = "not_object"  # a 2xx whose body is JSON but not an object


# Worth calling again later: the app may be back, less busy, or reachable then. The others
# fail the same way until the flow, the URL, the policy or the app's code changes.
RETRYABLE = frozenset(
    {
        Reason.TIMEOUT,
        Reason.UNREACHABLE,
        Reason.BREAKER_OPEN,
        Reason.SERVER_ERROR,
        Reason.RATE_LIMITED,
        Reason.REQUEST_TIMEOUT,
        Reason.BODY_BROKEN,
    }
)

# Statuses judged alone, then the rest by their class (the hundreds digit).
_STATUS_REASONS = {408: Reason.REQUEST_TIMEOUT, 429: Reason.RATE_LIMITED}
_CLASS_REASONS = {3: Reason.REDIRECT, 4: Reason.CLIENT_ERROR, 5: Reason.SERVER_ERROR}


@dataclass(frozen=True, kw_only=True)
class Answered:
    """The app answered a 2xx with a JSON object."""

    status: int
    json: dict[str, Any]  # the answer's object; a 204 (no content) answers {}


@dataclass(frozen=True, kw_only=True)
class Failed:
    """The call brought no usable answer."""

    reason: Reason
    detail: str  # for people: "HTTP 503", "timeout after 5s", "answer is JSON array, not …"
    status: int | None = None  # the answer's status, when one came
    # Seconds the app (its Retry-After) or the open breaker asks to wait before calling again.
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        """Whether calling again later may succeed (`RETRYABLE`)."""
        return self.reason in RETRYABLE


CallResult = Answered | Failed


def classify(response: transport.Response) -> CallResult:
    """What an answer means for a call step: its JSON object, or why it is unusable."""
    status = response.status
    if 200 <= status < 300:
        return _read_answer(response)
    reason = _STATUS_REASONS.get(status) or _CLASS_REASONS.get(status // 100)
    detail = f"HTTP {status}"
    if reason is None:
        reason = Reason.UNEXPECTED_STATUS
    elif reason is Reason.REDIRECT:
        detail += f", redirect to {response.location or '(no Location)'} not followed"
    return Failed(reason=reason, detail=detail, status=status, retry_after=response.retry_after)


def _read_answer(response: transport.Response) -> CallResult:
    status = response.status
    if status == 204:  # No Content: the app has nothing to set, which is an answer
        return Answered(status=status, json={})
    if response.body_end is transport.BodyEnd.CUT:
        detail = f"answer is larger than {MAX_ANSWER_BYTES} bytes"
        return Failed(reason=Reason.TOO_LARGE, detail=detail, status=status)
    if response.body_end is transport.BodyEnd.BROKEN:
        detail = f"answer broke off after {len(response.body)} bytes"
        return Failed(reason=Reason.BODY_BROKEN, detail=detail, status=status)
    if not response.body.strip():
        return Failed(reason=Reason.NOT_JSON, detail="answer is empty, not JSON", status=status)
    try:
        value = orjson.loads(response.body)
    except orjson.JSONDecodeError as exc:
        detail = f"answer is not JSON (invalid at byte {exc.pos})"
        return Failed(reason=Reason.NOT_JSON, detail=detail, status=status)
    if not isinstance(value, dict):
        detail = f"answer is JSON {_json_kind(value)}, not an object"
        return Failed(reason=Reason.NOT_OBJECT, detail=detail, status=status)
    return Answered(status=status, json=value)


def _json_kind(value: object) -> str:
    match value:
        case list():
            return "array"
        case str():
            return "string"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case _:
            return "null"


def failed(failure: transport.RequestFailed) -> Failed:
    """The outcome of a POST that got no answer."""
    if failure.refused:
        reason = Reason.REFUSED
    elif failure.timed_out:
        reason = Reason.TIMEOUT
    else:
        reason = Reason.UNREACHABLE
    return Failed(reason=reason, detail=failure.reason)


def new_call_id() -> str:
    """A fresh webhook-id for a call: "call_" and 16 random bytes in URL-safe base64."""
    return CALL_ID_PREFIX + secrets.token_urlsafe(16)


async def call(
    client: transport.Client,
    target: str,
    payload: Mapping[str, Any],
    *,
    secret: str,
    timeout: float,
    now: clock.Clock,
    breakers: breakers_.Breakers | None = None,
    call_id: str | None = None,
) -> CallResult:
    """POST `payload` as signed JSON to `target` and judge the answer; never raises on failure.

    `timeout` is in seconds. With `breakers`, an open breaker of the target's origin fails the
    call at once (`breaker_open`, with the wait), and the outcome is counted: a retryable
    failure counts against the origin, any other answer closes its breaker. Pass the same
    `call_id` (the webhook-id) when retrying one call, so the app can tell a repeat.
    """
    try:
        url = guard.check_url(target, client.policy)
    except guard.TargetRefused as exc:
        return Failed(reason=Reason.REFUSED, detail=f"refused: {exc.reason}")
    key = breakers_.origin(url)
    probe = False
    if breakers is not None:
        admission = breakers.admit(key, now=now())
        if not admission.allowed:
            detail = f"circuit open for {key}"
            wait = admission.wait_seconds
            return Failed(reason=Reason.BREAKER_OPEN, detail=detail, retry_after=wait)
        probe = admission.probe
    body = orjson.dumps(dict(payload))  # orjson serialises dicts, not every Mapping
    headers = signing.headers(
        [secret], msg_id=call_id or new_call_id(), timestamp=now(), body=body.decode()
    )
    try:
        response = await client.post(
            url, body, headers, timeout_seconds=timeout, read_bytes=MAX_ANSWER_BYTES
        )
    except transport.RequestFailed as exc:
        outcome: CallResult = failed(exc)
    except BaseException:  # cancelled: no outcome, so the probe goes to the next caller
        if breakers is not None and probe:
            breakers.release_probe(key, now=now())
        raise
    else:
        outcome = classify(response)
    if breakers is not None:
        _count(breakers, key, outcome, probe=probe, now=now)
    return outcome


def _count(
    breakers: breakers_.Breakers, key: str, outcome: CallResult, *, probe: bool, now: clock.Clock
) -> None:
    """What the outcome tells the origin's breaker: a retryable failure is one against it."""
    if isinstance(outcome, Failed) and outcome.reason is Reason.REFUSED:
        if probe:  # a name resolved to a refused address: the app was never reached
            breakers.release_probe(key, now=now())
    elif isinstance(outcome, Failed) and outcome.retryable:
        breakers.failed(key, now=now())
    else:
        breakers.succeeded(key)
