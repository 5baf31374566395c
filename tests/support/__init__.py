"""Helpers the tests share: processes, configs, the pool, Redis, hostile clients."""
