"""The webhooks lane in a process of its own under `tgrelay serve`.

Deliveries (and conversations' calls) cost about three times an update's processing in
CPU: in the serving process they shared one core with the intake and the updates worker,
and events arrived at the endpoints slower than updates came in (docs/design-notes.md,
"The webhooks lane in its own process").
"""
