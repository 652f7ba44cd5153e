"""The outbox: the one way any domain sends to Telegram (DESIGN, "telegram/").

`messages` (what can be asked), `jobs` (enqueue in the caller's transaction; the send job),
`turn` (the rate-limit turn), `actions` (each Telegram error's action, one table), `calls`
(a request as its Bot API call), `outcomes` and `registry` (what domains give and get back).
It imports no domain: what it needs from them is registered at start-up (tgrelay.wiring).
"""
