"""Fakes that tgrelay's tests and its users share.

- `emulator`: an emulated Telegram Bot API server (see its docstring for both surfaces);
  `emulator_server` serves it (`running_emulator()` in a test, `run()` for the CLI).
- `clock`: a clock tests can move forward.
- `receiver`: a webhook receiver that records requests and answers as told.
- `serving`: any ASGI app on a loopback port inside the current event loop.
"""
