"""Standard Webhooks signatures of outgoing events and calls, over the reference signer.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 keyed with the
base64-decoded secret (https://www.standardwebhooks.com, "Signature scheme").
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from secrets import token_bytes

from standardwebhooks import webhooks

from tgrelay import clock, errors

SECRET_PREFIX = "whsec_"  # noqa: S105 (the scheme's prefix, not a secret)
# The spec asks for secrets of 24 to 64 random bytes; we generate 32.
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
_GENERATED_SECRET_BYTES = 32
# Signers kept decoded (`_signer`): each endpoint's current secret, and those in overlap.
_SIGNERS_KEPT = 1024
# How far a webhook-timestamp may be from the receiver's clock (the spec and the package: 5 min).
TOLERANCE = timedelta(minutes=5)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
_REQUIRED_HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
# Integer seconds without sign or leading zeros: the only form that signs as it is written.
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,11}")
_SIGNATURE_VERSION = "v1"
# RFC 9110 field names, and the request line that may open a saved request.
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REQUEST_LINE = re.compile(r"[A-Z]+ \S+ HTTP/[0-9.]+")


class InvalidSecret(errors.InvalidInput):
    """Webhook secrets are "whsec_" followed by the base64 of 24 to 64 random bytes."""


class Reason(enum.StrEnum):
    """Why a webhook did not verify."""

    MISSING_HEADER = "missing_header"  # webhook-id, -timestamp or -signature absent or empty
    MALFORMED_TIMESTAMP = "malformed_timestamp"  # not integer unix seconds
    TOO_OLD = "too_old"  # timestamp before now - tolerance (a replay, or a slow queue)
    TOO_NEW = "too_new"  # timestamp after now + tolerance (a clock out of step)
    NO_MATCHING_SIGNATURE = "no_matching_signature"  # wrong secret, or body or id altered
    # The verifier's own secret is unusable.
    MALFORMED_SECRET = "malformed_secret"  # noqa: S105 (a reason, not a password)


class VerificationFailed(errors.InvalidInput):
    """The webhook's signature headers do not verify."""

    def __init__(self, message: str, *, reason: Reason) -> None:
        super().__init__(message)
        self.reason = reason


def generate_secret() -> str:
    """A new endpoint secret: "whsec_" and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(_GENERATED_SECRET_BYTES)).decode()


def validate_secret(secret: str) -> str:
    """The secret unchanged when it is well-formed; InvalidSecret says what is wrong otherwise."""
    _secret_bytes(secret)
    return secret


def sign(secret: str, *, msg_id: str, timestamp: datetime, body: str) -> str:
    """One signature, "v1,<base64 HMAC-SHA256>", of a message under one secret."""
    # Webhook.sign reads the datetime's wall time as UTC (it replaces tzinfo), so pass UTC.
    return _signer(secret).sign(msg_id, _as_utc(timestamp), body)


@functools.lru_cache(maxsize=_SIGNERS_KEPT)
def _signer(secret: str) -> webhooks.Webhook:
    """The reference signer of a secret, kept: decoding and checking the secret cost more
    than the HMAC of a whole event (a delivery lane signs every POST with one of a few)."""
    return webhooks.Webhook(_secret_bytes(secret))


def signature_header(secrets: Sequence[str], *, msg_id: str, timestamp: datetime, body: str) -> str:
    """The webhook-signature value: one signature per secret, separated by spaces.

    During a rotation both the new and the old secret sign, so receivers holding either
    one verify the message.
    """
    if not secrets:
        raise InvalidSecret("at least one secret is needed to sign a webhook")
    return " ".join(
        sign(secret, msg_id=msg_id, timestamp=timestamp, body=body) for secret in secrets
    )


def headers(
    secrets: Sequence[str], *, msg_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    """Every header of a signed webhook POST whose body is `body`."""
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(_unix_seconds(timestamp)),
        SIGNATURE_HEADER: signature_header(secrets, msg_id=msg_id, timestamp=timestamp, body=body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    *,
    headers: Mapping[str, str],
    body: str | bytes,
    now: datetime | None = None,
    tolerance: timedelta = TOLERANCE,
) -> None:
    """Accept a received webhook, or raise VerificationFailed with the reason.

    Header names are matched case-insensitively; `body` is the raw body as received.
    """
    try:
        key = _secret_bytes(secret)
    except InvalidSecret as exc:
        raise VerificationFailed(exc.message, reason=Reason.MALFORMED_SECRET) from None
    received = {name.lower(): value for name, value in headers.items()}
    for name in _REQUIRED_HEADERS:
        if not received.get(name):
            raise VerificationFailed(f"missing header {name}", reason=Reason.MISSING_HEADER)
    msg_id = received[ID_HEADER]

    stamp = received[TIMESTAMP_HEADER].strip()
    if _TIMESTAMP.fullmatch(stamp) is None:
        raise VerificationFailed(
            f"{TIMESTAMP_HEADER} must be integer unix seconds",
            reason=Reason.MALFORMED_TIMESTAMP,
        )
    age = _as_utc(now or clock.utcnow()).timestamp() - int(stamp)
    if age > tolerance.total_seconds():
        raise VerificationFailed(
            f"{TIMESTAMP_HEADER} is {age:.0f} s old, more than the {_seconds(tolerance)} s tolerance",
            reason=Reason.TOO_OLD,
        )
    if -age > tolerance.total_seconds():
        raise VerificationFailed(
            f"{TIMESTAMP_HEADER} is {-age:.0f} s in the future, more than the "
            f"{_seconds(tolerance)} s tolerance",
            reason=Reason.TOO_NEW,
        )

    if isinstance(body, bytes):
        try:
            body = body.decode()
        except UnicodeDecodeError:
            raise VerificationFailed(
                "the body is not UTF-8, so no signature can match",
                reason=Reason.NO_MATCHING_SIGNATURE,
            ) from None
    expected = _signature_bytes(
        webhooks.Webhook(key).sign(msg_id, datetime.fromtimestamp(int(stamp), UTC), body)
    )
    # Entries of other versions are skipped, as the spec asks; a garbled entry matches nothing.
    offered = [
        _signature_bytes(entry)
        for entry in received[SIGNATURE_HEADER].split()
        if entry.startswith(f"{_SIGNATURE_VERSION},")
    ]
    if not offered:
        raise VerificationFailed(
            f"{SIGNATURE_HEADER} holds no {_SIGNATURE_VERSION} signature",
            reason=Reason.NO_MATCHING_SIGNATURE,
        )
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise VerificationFailed(
            "no signature matches this secret (wrong secret, or the body or id was altered)",
            reason=Reason.NO_MATCHING_SIGNATURE,
        )


def parse_headers(text: str) -> dict[str, str]:
    """Received headers as saved by a receiver: a JSON object, or "Name: value" lines.

    Names come back lower-cased. Lines may be a whole saved request: its request line is
    skipped and the first blank line after the headers ends them.
    """
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.InvalidInput(f"the headers are not valid JSON: {exc.msg}") from None
        if not all(isinstance(value, str) for value in parsed.values()):
            raise errors.InvalidInput("the headers' JSON object must map names to strings")
        return {name.lower(): value for name, value in parsed.items()}
    lines = text.strip().splitlines()
    skip = 1 if lines and _REQUEST_LINE.fullmatch(lines[0].strip()) else 0
    found: dict[str, str] = {}
    for number, line in enumerate(lines[skip:], start=skip + 1):
        if not line.strip():
            break
        name, colon, value = line.partition(":")
        if not colon or _FIELD_NAME.fullmatch(name) is None:
            raise errors.InvalidInput(
                f'header line {number} is not "Name: value" (nor is the text a JSON object)'
            )
        name = name.lower()
        if name in _REQUIRED_HEADERS and name in found:
            raise errors.InvalidInput(f"the header {name} appears more than once")
        found[name] = value.strip()
    return found


def _secret_bytes(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(f'a webhook secret starts with "{SECRET_PREFIX}"')
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Padding is optional: some issuers drop it.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise InvalidSecret(f'a webhook secret is "{SECRET_PREFIX}" and then base64') from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise InvalidSecret(
            f"a webhook secret holds {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes; "
            f"this one holds {len(key)}"
        )
    return key


def _signature_bytes(entry: str) -> bytes:
    """The HMAC in a "v1,<base64>" entry; empty (matching nothing) when it is not base64."""
    try:
        return base64.b64decode(entry.partition(",")[2], validate=True)
    except binascii.Error:
        return b""


def _as_utc(timestamp: datetime) -> datetime:
    if timestamp.tzinfo is None:
        raise ValueError("webhook timestamps must be timezone-aware")
    return timestamp.astimezone(UTC)


def _unix_seconds(timestamp: datetime) -> int:
    # Floored, as Webhook.sign does, so the header and the signed content agree.
    return math.floor(_as_utc(timestamp).timestamp())


def _seconds(duration: timedelta) -> str:
    return f"{duration.total_seconds():g}"
