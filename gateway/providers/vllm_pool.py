"""`kind: vllm_pool` — the self-hosted pool as a provider: ask the pool for a lease (admission
and the replica choice live in `fallback_engine`), send over the OpenAI wire to that replica
(or to the pool's router), and give the lease back when the answer or the stream ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fallback_engine.load import PoolRequest
from fallback_engine.metrics import PoolMetrics
from fallback_engine.pool import Lease, Pool, PoolShed
from fallback_engine.prefix import CHARS_PER_TOKEN, block_hashes, prompt_text
from gateway import tracing
from gateway.errors import ConnectFailed, Timeout, UpstreamFailure
from gateway.providers.base import (
    Provider,
    UpstreamCall,
    UpstreamResponse,
    UpstreamStream,
    WrappedStream,
)
from gateway.providers.openai import PATHS, OpenAIAdapter
from gateway.providers.upstream_errors import from_pool_shed
from gateway.upstream.pool import PoolState
from policies.pool import VllmPoolProvider
from policies.schema import OpenAIProvider


class VllmPoolAdapter(Provider):
    supports = frozenset({"chat", "completions"})

    def __init__(self, name: str, config: VllmPoolProvider, metrics: PoolMetrics | None) -> None:
        self.name = name
        self.config = config
        self.pool = Pool(name, config, metrics)
        self._wire = OpenAIAdapter(
            name,
            OpenAIProvider(
                kind="openai",
                api_base="http://pool.invalid/v1",  # never used: every call names its replica
                api_key=config.api_key,
                timeouts=config.timeouts,
                max_connections=config.max_connections,
            ),
        )

    async def start(self) -> None:
        await self._wire.start()
        await self.pool.start()

    def adopt(self, previous: Provider) -> None:
        old = previous.unwrapped()
        if isinstance(old, VllmPoolAdapter):
            self.pool.adopt(old.pool)

    async def close(self) -> None:
        await self.pool.close()
        await self._wire.close()

    def connections(self) -> list[PoolState]:
        return self._wire.connections()  # one origin per replica

    def _request(self, call: UpstreamCall) -> PoolRequest:
        text = prompt_text(call.body)
        routing = self.config.routing
        return PoolRequest(
            prompt_tokens=call.prompt_tokens or len(text) // CHARS_PER_TOKEN + 1,
            output_tokens=max(1, call.output_tokens),
            prefix=block_hashes(text, routing.block_tokens, routing.max_prefix_blocks),
            priority=call.priority,
        )

    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        request = self._request(call)
        waited: dict[str, str | int] = {
            "spillover.pool": self.name,
            "spillover.priority": call.priority,
            "gen_ai.usage.input_tokens": request.prompt_tokens,
        }
        with tracing.span("spillover.pool.admission", waited) as admission:
            try:
                lease = await self.pool.acquire(
                    request, call.timeouts.total, call.allow_cap_context
                )
            except PoolShed as shed:
                tracing.failed(admission, f"shed_{shed.reason}")
                raise from_pool_shed(shed) from None
            if admission is not None:
                admission.set_attribute("server.address", _host(lease.base_url))
        if lease.max_tokens is not None:
            call.body = {**call.body, "max_tokens": lease.max_tokens}
            call.body.pop("max_completion_tokens", None)
        call.body = _within_window(call.body, lease)
        url = lease.base_url + "/v1" + PATHS[call.endpoint]
        try:
            result = await self._wire.send_to(url, call)
        except UpstreamFailure as failure:
            self._failed(lease, failure)
            lease.release()
            raise
        except BaseException:
            lease.release()
            raise
        if isinstance(result, UpstreamResponse):
            lease.release()
            return result
        return _LeasedStream(result, lease, self)

    def _failed(self, lease: Lease, failure: UpstreamFailure) -> None:
        refused = isinstance(failure, ConnectFailed)
        if refused or (isinstance(failure, Timeout) and failure.phase == "connect"):
            out = self.pool.report_unreachable(lease, failure.error_class, refused)
            # One replica out of rotation is the pool's business; the target stays healthy
            # for the breaker while other replicas serve.
            failure.counts_against_target = not (out and self.pool.ready())


class _LeasedStream(WrappedStream):
    """The replica's stream; the lease goes back when it ends, fails or is closed."""

    def __init__(self, inner: UpstreamStream, lease: Lease, adapter: VllmPoolAdapter) -> None:
        super().__init__(inner)
        self._lease = lease
        self._adapter = adapter

    async def _events(self) -> AsyncIterator[bytes]:
        try:
            async for event in self._inner:
                self._lease.first_token()
                yield event
        except UpstreamFailure as failure:
            self._adapter._failed(self._lease, failure)
            raise
        finally:
            self._lease.release()

    async def aclose(self) -> None:
        self._lease.release()
        await self._inner.aclose()


def _within_window(body: dict[str, Any], lease: Lease) -> dict[str, Any]:
    """A max_tokens past the replica's context window, capped to the window. vLLM refuses
    one (400) but itself caps any smaller one to what the prompt leaves — so the answer is
    the same as a replica with room would give, where an agent's 128k max_tokens would
    otherwise fail on a pool of 32k-token replicas."""
    window = lease.replica.max_model_len if lease.replica is not None else None
    if window is None:
        return body
    for name in ("max_tokens", "max_completion_tokens"):
        asked = body.get(name)
        if isinstance(asked, int) and not isinstance(asked, bool) and asked > window:
            body = {**body, name: window}
    return body


def _host(base_url: str) -> str:
    return urlsplit(base_url).hostname or ""
