"""The self-hosted vLLM pool: replicas, their lifecycle and load, admission, choice, leases,
the wait queue, and a simulator of vLLM to test it against."""
