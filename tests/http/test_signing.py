"""Standard Webhooks signatures: known answers, the reference verifier, and every refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import webhooks

from tgrelay import errors
from tgrelay.http import signing

# The Standard Webhooks specification's published test vector (also svix's).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIME = datetime.fromtimestamp(1614265330, UTC)
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# A tgrelay-shaped event with non-ASCII text (signed as UTF-8), under a secret of bytes 0..31.
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 124))).decode()
MSG_ID = "msg_2x4Yq8"
T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
EVENT = {
    "id": "evt_2x4Yq8",
    "type": "message.received",
    "timestamp": "2026-11-21T12:00:00Z",
    "workspace_id": "ws_7Hk2",
    "data": {"text": "привет"},
}
BODY = (
    '{"id":"evt_2x4Yq8","type":"message.received","timestamp":"2026-11-21T12:00:00Z",'
    '"workspace_id":"ws_7Hk2","data":{"text":"привет"}}'
)
SIGNATURE = "v1,nEe0JoUNfnwh1UY9PXaxHxGTY2oHSgvlMSxDEWbdJXI="


def spec_signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The signature as the specification defines it, computed without tgrelay or the package."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("secret", "msg_id", "timestamp", "body", "expected"),
    [
        (SPEC_SECRET, SPEC_ID, SPEC_TIME, SPEC_BODY, SPEC_SIGNATURE),
        (SECRET, MSG_ID, T0, BODY, SIGNATURE),
    ],
)
def test_sign_known_answers(
    secret: str, msg_id: str, timestamp: datetime, body: str, expected: str
) -> None:
    """A fixed secret, id, timestamp and body give exactly the known signature, which the spec's formula derives."""
    assert spec_signature(secret, msg_id, int(timestamp.timestamp()), body) == expected
    assert signing.sign(secret, msg_id=msg_id, timestamp=timestamp, body=body) == expected


def test_sign_reads_the_instant_not_the_wall_time() -> None:
    """A timestamp in another zone or with a fraction of a second signs as its floored UTC instant."""
    elsewhere = (T0 + timedelta(microseconds=999_999)).astimezone(timezone(timedelta(hours=3)))
    assert signing.sign(SECRET, msg_id=MSG_ID, timestamp=elsewhere, body=BODY) == SIGNATURE


def test_sign_refuses_a_naive_timestamp() -> None:
    """A timestamp without a zone is refused rather than guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        signing.sign(SECRET, msg_id=MSG_ID, timestamp=T0.replace(tzinfo=None), body=BODY)


def test_headers_of_one_secret() -> None:
    """The headers carry the id, integer unix seconds, one signature and the JSON content type."""
    assert signing.headers([SECRET], msg_id=MSG_ID, timestamp=T0, body=BODY) == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": "1795262400",
        "webhook-signature": SIGNATURE,
        "content-type": "application/json",
    }


def test_signature_header_signs_with_every_secret_in_order() -> None:
    """During a rotation the header holds one signature per secret, separated by a space."""
    header = signing.signature_header([SECRET, OLD_SECRET], msg_id=MSG_ID, timestamp=T0, body=BODY)
    assert header == f"{SIGNATURE} {spec_signature(OLD_SECRET, MSG_ID, 1795262400, BODY)}"


def test_signature_header_needs_a_secret() -> None:
    """Signing with no secret at all is refused."""
    with pytest.raises(signing.InvalidSecret, match="at least one secret"):
        signing.signature_header([], msg_id=MSG_ID, timestamp=T0, body=BODY)


@pytest.mark.parametrize("secrets", [[SECRET], [SECRET, OLD_SECRET], [OLD_SECRET, SECRET]])
def test_reference_verifier_accepts_our_headers(secrets: list[str]) -> None:
    """The standardwebhooks package's own verifier accepts what we send, signed just now."""
    sent = signing.headers(secrets, msg_id=MSG_ID, timestamp=datetime.now(UTC), body=BODY)
    for secret in secrets:
        assert webhooks.Webhook(secret).verify(BODY, sent) == EVENT


@pytest.mark.parametrize("verifier_secret", [SECRET, OLD_SECRET])
def test_verify_accepts_a_rotation_header_with_either_secret(verifier_secret: str) -> None:
    """A receiver holding the new or the old secret accepts a message signed with both."""
    sent = signing.headers([SECRET, OLD_SECRET], msg_id=MSG_ID, timestamp=T0, body=BODY)
    signing.verify(verifier_secret, headers=sent, body=BODY, now=T0)


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        ({"webhook-id": MSG_ID, "webhook-timestamp": "1795262400", "webhook-signature": SIGNATURE}, BODY, T0),
        ({"Webhook-Id": MSG_ID, "WEBHOOK-TIMESTAMP": "1795262400", "Webhook-Signature": SIGNATURE}, BODY, T0),
        ({"webhook-id": MSG_ID, "webhook-timestamp": "1795262400", "webhook-signature": SIGNATURE}, BODY.encode(), T0),
        ({"webhook-id": MSG_ID, "webhook-timestamp": "1795262400", "webhook-signature": f"v2,abc v1,%%% v1 {SIGNATURE}"}, BODY, T0),
        ({"webhook-id": MSG_ID, "webhook-timestamp": "1795262400", "webhook-signature": SIGNATURE}, BODY, T0 + timedelta(minutes=5)),
        ({"webhook-id": MSG_ID, "webhook-timestamp": "1795262400", "webhook-signature": SIGNATURE}, BODY, T0 - timedelta(minutes=5)),
    ],
    ids=["exact", "any-case-names", "bytes-body", "other-entries-skipped", "5-min-old", "5-min-ahead"],
)  # fmt: skip
def test_verify_accepts(headers: dict[str, str], body: str | bytes, now: datetime) -> None:
    """A correct signature verifies whatever the header case, body type, extra entries, up to the tolerance."""
    signing.verify(SECRET, headers=headers, body=body, now=now)


GOOD = {"webhook-id": MSG_ID, "webhook-timestamp": "1795262400", "webhook-signature": SIGNATURE}
R = signing.Reason


@pytest.mark.parametrize(
    ("secret", "headers", "body", "now", "reason", "message"),
    [
        (SECRET, GOOD, BODY.replace("привет", "привет!"), T0, R.NO_MATCHING_SIGNATURE, "no signature matches this secret (wrong secret, or the body or id was altered)"),
        (SECRET, {**GOOD, "webhook-id": "msg_other"}, BODY, T0, R.NO_MATCHING_SIGNATURE, "no signature matches this secret (wrong secret, or the body or id was altered)"),
        (OLD_SECRET, GOOD, BODY, T0, R.NO_MATCHING_SIGNATURE, "no signature matches this secret (wrong secret, or the body or id was altered)"),
        (SECRET, {**GOOD, "webhook-signature": "v2,P9b8ZFtS4e9S9rFbi1qkAZ3IgKgGBw8z93P4B3ZYJKM="}, BODY, T0, R.NO_MATCHING_SIGNATURE, "webhook-signature holds no v1 signature"),
        (SECRET, GOOD, b"\xff" + BODY.encode(), T0, R.NO_MATCHING_SIGNATURE, "the body is not UTF-8, so no signature can match"),
        (SECRET, GOOD, BODY, T0 + timedelta(seconds=301), R.TOO_OLD, "webhook-timestamp is 301 s old, more than the 300 s tolerance"),
        (SECRET, GOOD, BODY, T0 + timedelta(days=1), R.TOO_OLD, "webhook-timestamp is 86400 s old, more than the 300 s tolerance"),
        (SECRET, GOOD, BODY, T0 - timedelta(seconds=301), R.TOO_NEW, "webhook-timestamp is 301 s in the future, more than the 300 s tolerance"),
        (SECRET, {k: v for k, v in GOOD.items() if k != "webhook-id"}, BODY, T0, R.MISSING_HEADER, "missing header webhook-id"),
        (SECRET, {**GOOD, "webhook-timestamp": ""}, BODY, T0, R.MISSING_HEADER, "missing header webhook-timestamp"),
        (SECRET, {k: v for k, v in GOOD.items() if k != "webhook-signature"}, BODY, T0, R.MISSING_HEADER, "missing header webhook-signature"),
        (SECRET, {**GOOD, "webhook-timestamp": "1795262400.0"}, BODY, T0, R.MALFORMED_TIMESTAMP, "webhook-timestamp must be integer unix seconds"),
        (SECRET, {**GOOD, "webhook-timestamp": "01795262400"}, BODY, T0, R.MALFORMED_TIMESTAMP, "webhook-timestamp must be integer unix seconds"),
        (SECRET, {**GOOD, "webhook-timestamp": "-5"}, BODY, T0, R.MALFORMED_TIMESTAMP, "webhook-timestamp must be integer unix seconds"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", GOOD, BODY, T0, R.MALFORMED_SECRET, 'a webhook secret starts with "whsec_"'),
    ],
    ids=["tampered-body", "other-id", "wrong-secret", "only-v2", "not-utf8", "too-old", "a-day-old", "too-new",
         "no-id", "empty-timestamp", "no-signature", "fractional", "leading-zero", "negative", "secret-without-prefix"],
)  # fmt: skip
def test_verify_refuses(
    secret: str,
    headers: dict[str, str],
    body: str | bytes,
    now: datetime,
    reason: signing.Reason,
    message: str,
) -> None:
    """Each way a webhook can fail raises VerificationFailed (an InvalidInput) with its reason and message."""
    with pytest.raises(signing.VerificationFailed) as caught:
        signing.verify(secret, headers=headers, body=body, now=now)
    assert isinstance(caught.value, errors.InvalidInput)
    assert (caught.value.reason, caught.value.message) == (reason, message)


def test_verify_takes_another_tolerance() -> None:
    """A receiver may widen the tolerance, to check a webhook saved an hour ago."""
    an_hour_later = T0 + timedelta(hours=1)
    signing.verify(SECRET, headers=GOOD, body=BODY, now=an_hour_later, tolerance=timedelta(hours=2))
    with pytest.raises(signing.VerificationFailed):
        signing.verify(SECRET, headers=GOOD, body=BODY, now=an_hour_later)


def test_generate_secret() -> None:
    """Generated secrets are "whsec_" and the padded base64 of 32 fresh random bytes."""
    first, second = signing.generate_secret(), signing.generate_secret()
    assert first != second
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
        assert signing.validate_secret(secret) == secret


def _whsec(length: int) -> str:
    return "whsec_" + base64.b64encode(b"k" * length).decode()


@pytest.mark.parametrize(
    "secret",
    [_whsec(24), _whsec(64), SPEC_SECRET, _whsec(32).rstrip("="), _whsec(25).rstrip("=")],
    ids=["24-bytes", "64-bytes", "spec", "32-unpadded", "25-unpadded"],
)
def test_validate_secret_accepts(secret: str) -> None:
    """Secrets of 24 to 64 bytes are accepted, padded or not."""
    assert signing.validate_secret(secret) == secret


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (_whsec(32).removeprefix("whsec_"), 'a webhook secret starts with "whsec_"'),
        ("whsec_not base64!", 'a webhook secret is "whsec_" and then base64'),
        ("whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-", 'a webhook secret is "whsec_" and then base64'),
        ("whsec_", "a webhook secret holds 24 to 64 bytes; this one holds 0"),
        (_whsec(23), "a webhook secret holds 24 to 64 bytes; this one holds 23"),
        (_whsec(65), "a webhook secret holds 24 to 64 bytes; this one holds 65"),
    ],
    ids=["no-prefix", "not-base64", "urlsafe-alphabet", "empty", "23-bytes", "65-bytes"],
)
def test_validate_secret_refuses(secret: str, message: str) -> None:
    """A malformed secret is refused with what is wrong, for signing and verifying alike."""
    with pytest.raises(signing.InvalidSecret) as caught:
        signing.validate_secret(secret)
    assert caught.value.message == message
    with pytest.raises(signing.InvalidSecret):
        signing.sign(secret, msg_id=MSG_ID, timestamp=T0, body=BODY)
    with pytest.raises(signing.VerificationFailed) as refused:
        signing.verify(secret, headers=GOOD, body=BODY, now=T0)
    assert (refused.value.reason, refused.value.message) == (
        signing.Reason.MALFORMED_SECRET,
        message,
    )
