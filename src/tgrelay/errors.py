"""tgrelay's error tree. Foreign exceptions are translated into these at the edges.

TgrelayError
├── ConfigurationError         settings that cannot work (fail closed)
│   └── UndecryptableSecret    a stored ciphertext no configured key opens; names where
├── NotFound                   no such record in this workspace (HTTP 404)
├── Conflict                   the request clashes with current state (HTTP 409)
├── InvalidInput               a request that parsed but makes no sense (HTTP 422)
├── AuthenticationFailed       missing or unknown API key (HTTP 401)
├── Forbidden                  a valid key whose scope does not allow the request (HTTP 403)
├── StorageUnavailable         the database failed; nothing was stored (HTTP 503)
└── TelegramError              the Bot API refused or could not be reached
    ├── TelegramUnauthorized   401: token revoked or invalid
    ├── TelegramConflict       409: webhook active or another poller
    ├── TelegramRetryAfter     429: flood control; carries retry_after
    ├── TelegramBadRequest     400: carries migrate_to_chat_id when a group moved
    ├── TelegramForbidden      403: bot kicked or blocked
    └── TelegramUnavailable    network error, timeout or 5xx: worth retrying
        └── TelegramCircuitOpen  not sent: the bot's recent calls failed; carries retry_after

Errors of one edge live beside it and join the tree from there: http.guard.TargetRefused
and http.signing.VerificationFailed / InvalidSecret are InvalidInput (422);
http.transport.RequestFailed is a TgrelayError that deliveries and calls record, never raise;
demo.runner.StepFailed is a TgrelayError that ends `tgrelay demo`, naming the step.
"""

from __future__ import annotations


class TgrelayError(Exception):
    """Something went wrong in tgrelay."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigurationError(TgrelayError):
    """The settings cannot work as given."""


class UndecryptableSecret(ConfigurationError):
    """A stored secret cannot be decrypted with any configured key."""

    def __init__(self, *, table: str, row_id: str, column: str) -> None:
        super().__init__(
            f"{table} row {row_id}: {column} cannot be decrypted with any key in "
            "TGRELAY_SECRET_KEYS (was the key it was encrypted under removed?)"
        )
        self.table = table
        self.row_id = row_id
        self.column = column


class NotFound(TgrelayError):
    """No such record in this workspace."""


class Conflict(TgrelayError):
    """The request clashes with the current state."""


class InvalidInput(TgrelayError):
    """The request is well-formed but cannot be carried out."""


class AuthenticationFailed(TgrelayError):
    """A valid API key is required: Authorization: Bearer <key>."""


class Forbidden(TgrelayError):
    """This API key may not do that: a `read` key only reads; writes need an `admin` key."""


class StorageUnavailable(TgrelayError):
    """The database could not be reached; nothing was stored."""


class TelegramError(TgrelayError):
    """The Telegram Bot API refused the call or could not be reached."""

    def __init__(self, message: str | None = None, *, method: str = "") -> None:
        super().__init__(message)
        self.method = method


class TelegramUnauthorized(TelegramError):
    """Telegram answered 401: the bot token is revoked or invalid."""


class TelegramConflict(TelegramError):
    """Telegram answered 409: a webhook is active or another poller is running."""


class TelegramRetryAfter(TelegramError):
    """Telegram answered 429: flood control, retry later."""

    def __init__(self, message: str | None = None, *, method: str = "", retry_after: float) -> None:
        super().__init__(message, method=method)
        self.retry_after = retry_after


class TelegramBadRequest(TelegramError):
    """Telegram answered 400: the request was refused."""

    def __init__(
        self, message: str | None = None, *, method: str = "", migrate_to_chat_id: int | None = None
    ) -> None:
        super().__init__(message, method=method)
        self.migrate_to_chat_id = migrate_to_chat_id


class TelegramForbidden(TelegramError):
    """Telegram answered 403: the bot was kicked from the chat or blocked by the user."""


class TelegramUnavailable(TelegramError):
    """Telegram could not be reached or failed (network error, timeout, 5xx)."""


class TelegramCircuitOpen(TelegramUnavailable):
    """Recent calls of this bot could not reach Telegram, so this one was not sent."""

    def __init__(self, message: str | None = None, *, method: str = "", retry_after: float) -> None:
        super().__init__(message, method=method)
        self.retry_after = retry_after  # seconds until a call may go again (as the probe)
