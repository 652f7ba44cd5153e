"""The pure parts of key rotation: which key opens a ciphertext, re-encrypting one row."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tgrelay import errors, keyring
from tgrelay.crypto import TokenCipher
from tgrelay.db import migrate

# Fernet keys of the bytes 0..31 and 32..63, whose SHA-256 digests begin 630dcd29, 72dbb733.
KEY_A = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
KEY_B = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
KEY_C = Fernet.generate_key().decode()


def cipher(*keys: str) -> TokenCipher:
    return TokenCipher([SecretStr(key) for key in keys])


def test_fingerprints_are_the_first_digits_of_each_keys_sha256() -> None:
    """Known answer: keys are shown as 8 hex digits of the SHA-256 of their 32 bytes, in order."""
    assert cipher(KEY_B, KEY_A).key_fingerprints() == ["72dbb733", "630dcd29"]


def test_key_position_names_the_key_a_ciphertext_was_made_under() -> None:
    """A ciphertext is placed at its key's position; one no configured key opens is None."""
    under_a = cipher(KEY_A).encrypt("123:token")
    under_b = cipher(KEY_B).encrypt("123:token")
    rotated = cipher(KEY_B, KEY_A)
    assert [rotated.key_position(under_b), rotated.key_position(under_a)] == [0, 1]
    assert cipher(KEY_B).key_position(under_a) is None


def test_reencrypt_moves_a_ciphertext_to_the_primary_key_keeping_its_plaintext() -> None:
    """The re-encrypted value opens with the primary key alone and holds the same plaintext."""
    under_a = cipher(KEY_A).encrypt("123:token")
    moved = cipher(KEY_B, KEY_A).reencrypt(under_a)
    assert (cipher(KEY_B).key_position(moved), cipher(KEY_B).decrypt(moved)) == (0, "123:token")
    with pytest.raises(errors.ConfigurationError):
        cipher(KEY_C).reencrypt(under_a)


def endpoint_row(current: str, previous: str | None, earlier: list[str]) -> dict[str, Any]:
    pairs = [
        [ciphertext, f"2025-03-0{n + 2}T12:00:00+00:00"] for n, ciphertext in enumerate(earlier)
    ]
    return {
        "id": "ep_1",
        "secret_ciphertext": current,
        "previous_secret_ciphertext": previous,
        "earlier_secrets": orjson.dumps(pairs).decode() if earlier else None,
    }


def test_a_row_already_under_the_primary_key_needs_nothing() -> None:
    """Every secret of the row opens with the primary key: nothing to write (resuming skips it)."""
    b = cipher(KEY_B)
    row = endpoint_row(b.encrypt("whsec_1"), b.encrypt("whsec_0"), [b.encrypt("whsec_e")])
    assert keyring.reencrypted(cipher(KEY_B, KEY_A), keyring.ENDPOINTS, row) is None


def test_a_row_is_reencrypted_whole_earlier_secrets_included() -> None:
    """One old ciphertext moves the row: each column, and each pair of earlier_secrets with its
    overlap end as it was, now open with the primary key to the same plaintexts."""
    a, b = cipher(KEY_A), cipher(KEY_B)
    row = endpoint_row(b.encrypt("whsec_1"), None, [a.encrypt("whsec_e1"), b.encrypt("whsec_e2")])
    values = keyring.reencrypted(cipher(KEY_B, KEY_A), keyring.ENDPOINTS, row)
    assert values is not None
    pairs = orjson.loads(values["earlier_secrets"])
    assert sorted(values) == ["earlier_secrets", "secret_ciphertext"]
    assert b.decrypt(values["secret_ciphertext"]) == "whsec_1"
    assert [(b.decrypt(c), at) for c, at in pairs] == [
        ("whsec_e1", "2025-03-02T12:00:00+00:00"),
        ("whsec_e2", "2025-03-03T12:00:00+00:00"),
    ]


def test_an_undecryptable_secret_is_named_by_table_row_and_column() -> None:
    """A ciphertext no configured key opens stops the row with its table, id and column."""
    row = endpoint_row(cipher(KEY_B).encrypt("whsec_1"), cipher(KEY_C).encrypt("whsec_0"), [])
    with pytest.raises(errors.UndecryptableSecret) as raised:
        keyring.reencrypted(cipher(KEY_B, KEY_A), keyring.ENDPOINTS, row)
    assert raised.value.message == (
        "endpoints row ep_1: previous_secret_ciphertext cannot be decrypted with any key in "
        "TGRELAY_SECRET_KEYS (was the key it was encrypted under removed?)"
    )


def test_revisions_are_alembics_from_first_to_head() -> None:
    """migrate.revisions, read from file names, lists Alembic's own revisions up to HEAD."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    walked = sorted(revision.revision for revision in script.walk_revisions())
    assert (migrate.revisions(), migrate.revisions()[-1]) == (walked, migrate.HEAD)
