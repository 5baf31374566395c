"""Observed routing state: sliding windows, latency estimates, breakers, cool-downs. `memory`
for one process, `redis` for many replicas (falling back to memory while Redis is away)."""
