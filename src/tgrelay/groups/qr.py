"""QR codes of a connect session's start link, for the API (SVG, PNG) and the web UI."""

from __future__ import annotations

import io

import segno

# Medium error correction: still readable from a photographed or slightly glared screen.
_ERROR_CORRECTION = "m"
TITLE = "QR code: open the bot in Telegram"


def svg(link: str, *, scale: int = 6) -> str:
    """An inline <svg> element (no XML declaration), safe to embed: segno writes it from `link`."""
    return segno.make(link, error=_ERROR_CORRECTION).svg_inline(scale=scale, title=TITLE)


def png(link: str, *, scale: int = 6) -> bytes:
    out = io.BytesIO()
    segno.make(link, error=_ERROR_CORRECTION).save(out, kind="png", scale=scale)
    return out.getvalue()
