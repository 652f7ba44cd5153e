"""What a page's form typed, read as the use cases want it."""

from __future__ import annotations

from tgrelay import errors


def form_int(field: str, what: str, *, blank: int | None = None) -> int | None:
    """A number typed in a form; `blank` when left empty."""
    if not field.strip():
        return blank
    try:
        return int(field.strip())
    except ValueError:
        raise errors.InvalidInput(f"{what} must be a whole number, not {field!r}") from None


def form_text(field: str) -> str | None:
    """A text that may be turned off: an empty box is null."""
    return field.strip() or None
