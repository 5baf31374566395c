"""The `spillover` command: serve, demo, drills, reports, capacity plans, the pool."""
