"""Retention: finished rows pruned by age, so a hub that runs for years stays small.

`policy` decides (pure, the clock passed in), `prune` deletes in short write transactions,
`runner` runs rounds periodically, one process at a time by lease.
"""
