"""Updates in: webhook receiver, poller, the group-commit writer, and processing dispatch."""
