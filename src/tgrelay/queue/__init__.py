"""Durable jobs: enqueue in the caller's transaction, claim with a lease, retry, bury, rerun.

`models` holds the records, `retry` the pure retry rules, `store` the SQL, `worker` the loop.
"""
