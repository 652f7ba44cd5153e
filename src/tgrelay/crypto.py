"""Secrets: bot tokens encrypted at rest, derived webhook secrets, hashed API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from tgrelay import errors

API_KEY_PREFIX = "tgr"
_API_KEY_RE = re.compile(r"^tgr_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
# Bot API tokens look like "123456789:AAE…" (digits, colon, 35 url-safe characters). No \b
# before the digits: in request URLs the token follows "/bot" directly.
BOT_TOKEN_RE = re.compile(r"(?<!\d)(\d{3,20}):[A-Za-z0-9_-]{30,}")
MAX_REMEMBERED_PLAINTEXTS = 4096


class TokenCipher:
    """Encrypts bot tokens with the primary key; decrypts with any configured key."""

    def __init__(self, keys: Sequence[SecretStr]) -> None:
        if not keys:
            raise errors.ConfigurationError("at least one secret key is required")
        try:
            self._fernets = [Fernet(key.get_secret_value().encode()) for key in keys]
        except ValueError as exc:
            raise errors.ConfigurationError(
                "TGRELAY_SECRET_KEYS must be Fernet keys (32 url-safe base64 bytes)"
            ) from exc
        self._multi = MultiFernet(self._fernets)
        self._raw_keys = [base64.urlsafe_b64decode(key.get_secret_value().encode()) for key in keys]
        # Fernet tokens carry a random IV, so one ciphertext has one plaintext: remembering
        # it spares each webhook attempt and Bot API call an AES decryption and an HMAC.
        self._decrypted: dict[str, str] = {}

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        plaintext = self._decrypted.get(ciphertext)
        if plaintext is not None:
            return plaintext
        try:
            plaintext = self._multi.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise errors.ConfigurationError(
                "a stored secret cannot be decrypted with the configured keys"
            ) from exc
        if len(self._decrypted) >= MAX_REMEMBERED_PLAINTEXTS:
            self._decrypted.clear()  # rotated secrets and removed bots leave stale entries
        self._decrypted[ciphertext] = plaintext
        return plaintext

    def key_fingerprints(self) -> list[str]:
        """A short stand-in per configured key, in order: 8 hex digits of its SHA-256.

        Safe to print: a hash of 256 random bits tells nothing about the key.
        """
        return [hashlib.sha256(raw).hexdigest()[:8] for raw in self._raw_keys]

    def key_position(self, ciphertext: str) -> int | None:
        """The position of the configured key a ciphertext was encrypted under; None if no
        key opens it. 0 is the primary key: a value there needs no re-encryption."""
        token = ciphertext.encode()
        for position, fernet in enumerate(self._fernets):
            try:
                fernet.decrypt(token)
            except InvalidToken:
                continue
            return position
        return None

    def reencrypt(self, ciphertext: str) -> str:
        """The same plaintext encrypted under the primary key (key rotation).

        Raises InvalidToken's translation, ConfigurationError, when no key opens it.
        """
        try:
            return self._multi.rotate(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise errors.ConfigurationError(
                "a stored secret cannot be decrypted with the configured keys"
            ) from exc

    def webhook_secrets(self, bot_id: int, generation: int) -> list[str]:
        """The secret of one generation under each key; the first is the one to register.

        Every configured key yields a valid secret so that adding a new primary key does not
        break webhooks registered under the previous one.
        """
        return [webhook_secret(raw, bot_id, generation) for raw in self._raw_keys]


def webhook_secret(key: bytes, bot_id: int, generation: int) -> str:
    """HMAC-derived webhook secret: 43 chars of A-Za-z0-9_-, as Telegram allows (1–256)."""
    digest = hmac.new(key, f"webhook-secret:{bot_id}:{generation}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def token_fingerprint(token: str) -> str:
    """A printable stand-in for a bot token: "123456:…abcd"."""
    bot_part, _, secret = token.partition(":")
    return f"{bot_part}:…{secret[-4:]}" if secret else "…"


def redact_tokens(text: str) -> str:
    """Replace every bot token in a text by its fingerprint."""
    return BOT_TOKEN_RE.sub(lambda match: token_fingerprint(match.group(0)), text)


@dataclass(frozen=True, kw_only=True)
class NewApiKey:
    key_id: str  # public part, "tgr_<12 chars>", safe to show and log
    plaintext: str  # the full key, shown once
    secret_hash: str  # what is stored


def new_api_key() -> NewApiKey:
    key_id = f"{API_KEY_PREFIX}_{_random_lower(12)}"
    secret = secrets.token_urlsafe(32)  # 43 chars
    return NewApiKey(key_id=key_id, plaintext=f"{key_id}_{secret}", secret_hash=hash_secret(secret))


def split_api_key(presented: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    match = _API_KEY_RE.match(presented)
    if match is None:
        return None
    return f"{API_KEY_PREFIX}_{match.group(1)}", match.group(2)


def hash_secret(secret: str) -> str:
    # API key secrets carry 256 random bits, so a fast hash is enough (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), expected_hash)


def _random_lower(length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))
