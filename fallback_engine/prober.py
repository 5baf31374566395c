"""The HTTP side of a replica's lifecycle (health, model listing, warm-up, scrape) over
httpx: imported when a pool starts, so a gateway without a pool never loads it."""

from __future__ import annotations

import time

import httpx

from fallback_engine.replica import Replica
from fallback_engine.scrape import Snapshot, parse
from policies.pool import VllmPoolProvider


class Prober:
    """The HTTP side of a replica's lifecycle: health, model listing, warm-up, scrape."""

    def __init__(self, config: VllmPoolProvider, client: httpx.AsyncClient) -> None:
        self._config = config
        self._client = client
        self._headers = (
            {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}
            if config.api_key is not None
            else {}
        )

    async def healthy(self, replica: Replica) -> bool:
        """/health is 200 and /v1/models lists the pool's model."""
        timeout = self._config.health.timeout_s
        try:
            health = await self._client.get(replica.url + "/health", timeout=timeout)
            if health.status_code != 200:
                replica.last_error = f"/health {health.status_code}"
                return False
            models = await self._client.get(
                replica.url + "/v1/models", headers=self._headers, timeout=timeout
            )
            cards = {m.get("id"): m for m in models.json().get("data", [])}
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            replica.last_error = type(exc).__name__
            return False
        card = cards.get(self._config.model)
        if not isinstance(card, dict):
            replica.last_error = f"model {self._config.model!r} not listed"
            return False
        window = card.get("max_model_len")
        replica.max_model_len = window if isinstance(window, int) and window > 0 else None
        return True

    async def warm_up(self, replica: Replica) -> bool:
        warm = self._config.warm_up
        body = {
            "model": self._config.model,
            "messages": [{"role": "user", "content": warm.prompt}],
            "max_tokens": warm.max_tokens,
        }
        try:
            reply = await self._client.post(
                replica.url + "/v1/chat/completions",
                json=body,
                headers=self._headers,
                timeout=warm.timeout_s,
            )
        except httpx.HTTPError as exc:
            replica.last_error = f"warm-up: {type(exc).__name__}"
            return False
        if reply.status_code != 200:
            replica.last_error = f"warm-up: {reply.status_code}"
            return False
        return True

    async def scrape(self, replica: Replica) -> Snapshot | None:
        try:
            reply = await self._client.get(
                replica.url + "/metrics", timeout=self._config.scrape.timeout_s
            )
            if reply.status_code != 200:
                return None
            return parse(reply.text, time.monotonic())
        except (httpx.HTTPError, ValueError):
            return None
