"""`tgrelay demo`: the whole offline tour in one command.

- `tour`: the steps (the emulator and the service start, a workspace, a bot, a user's message,
  a group linked in two phases, an alert, a signed delivery to a local receiver), each
  printing what happened and the `curl` line that does the same by hand; with `--flows`,
  then examples/flow_app.py as the team's app and the billing-address flow walked by a user
  to conversation.completed.
- `runner`: running steps in turn, waiting for conditions with deadlines; the first step
  that fails ends the run and is named.
- `children`: the emulator and `tgrelay serve` (and the example app) as child processes,
  always stopped.
- `command`: the command's process: a temporary directory, `--keep`, signals, exit status.
"""
