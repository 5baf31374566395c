"""The response cache stage, between prepare and serve: a repeated request answered from a
stored answer, for free, without touching a provider, a breaker or a pool replica.

The key is the tenant (team, else key), the route, the client protocol and the request
after shaping — tools in canonical order, volatile values moved — without the fields that
do not change the answer (`stream`, `user`, `metadata`, …); it never crosses tenants. Only
whole, successful answers are stored: never an error, a content-filtered answer, `n` > 1,
drill traffic, or — unless the route says `sampled: true` — a request that samples.
`Cache-Control` steers one request: `no-store` (bypass), `no-cache` (ask the upstream, then
store), `max-age=N` (only an answer at most N seconds old). A streamed answer is gathered as
it passes and stored once it ended cleanly (never a cut one); a stored answer is replayed
to a streaming client as its protocol's stream — whichever way it was asked the first time
(OpenAI chat, Anthropic Messages and Responses wires)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from gateway.metrics import GatewayMetrics
from gateway.pipeline.context import RequestContext
from gateway.pipeline.ports import HeaderList, Headers
from gateway.pipeline.served import Served
from gateway.providers import finish
from gateway.providers.base import ANTHROPIC, OPENAI, RESPONSES
from gateway.providers.translate.chat_replay import ChatGatherer, chat_events
from gateway.providers.translate.messages_replay import MessageGatherer, message_events
from gateway.providers.translate.responses_replay import ResponsesGatherer, response_events
from gateway.providers.upstream_errors import answer_object
from gateway.state.answers import AnswerStore, StoredAnswer
from policies.route import Route

CacheResult = Literal["hit", "miss", "bypass", "refresh"]
# Fields that never change what the model answers: left out of the key.
_NOT_IN_KEY = frozenset(
    {"stream", "stream_options", "user", "metadata", "store", "service_tier",
     "safety_identifier", "prompt_cache_key", "prompt_cache_retention"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CacheUse:
    """How this request uses the cache: its key, whether it may be answered from it (`use`)
    or only refreshes it (`refresh`), and the oldest answer it takes."""

    key: str
    mode: Literal["use", "refresh"]
    max_age_s: float | None


class ResponseCache:
    def __init__(self, store: AnswerStore, metrics: GatewayMetrics) -> None:
        self.store = store
        self._metrics = metrics

    def plan(self, ctx: RequestContext, route: Route, headers: Headers) -> CacheUse | None:
        """None: this request neither reads nor fills the cache (and says so: `bypass`)."""
        policy = route.cache
        if not policy.enabled:
            return None
        control = _cache_control(headers.get(b"cache-control"))
        if not self._cacheable(ctx, policy.sampled) or "no-store" in control:
            self._said(ctx, "bypass")
            return None
        mode: Literal["use", "refresh"] = "refresh" if "no-cache" in control else "use"
        return CacheUse(cache_key(ctx, route), mode, control.get("max-age"))

    async def lookup(self, ctx: RequestContext, use: CacheUse) -> StoredAnswer | None:
        if use.mode == "refresh":
            self._said(ctx, "refresh")
            return None
        found = await self.store.get(use.key)
        if found is not None and _older(found, use.max_age_s):
            found = None
        if found is not None and ctx.asked.stream and found.protocol not in REPLAYABLE:
            found = None
        self._said(ctx, "miss" if found is None else "hit")
        if found is not None:
            m = self._metrics
            saved = (found.cost_micro_usd or 0) / 1_000_000
            m.child(m.answer_cache_saved, ctx.route_name, _team(ctx)).inc(saved)
            ctx.outcome.cache_saved = found.cost_micro_usd or 0
        return found

    async def keep(self, ctx: RequestContext, route: Route, use: CacheUse, served: Served) -> None:
        """Store a whole answer just served, when it may be."""
        response = served.response
        if response is None:
            return
        reasons = finish.from_object(response.protocol, answer_object(response))
        await self._keep(ctx, route, use, served, response.protocol, response.body, reasons)

    async def keep_stream(
        self, ctx: RequestContext, route: Route, use: CacheUse, served: Served, gathered: Gatherer
    ) -> None:
        """Store a streamed answer once it ended cleanly: not cut, not resumed elsewhere."""
        outcome = ctx.outcome
        if served.stream is None or outcome.resumed or outcome.error_class is not None:
            return
        whole = gathered.whole()
        if whole is None:
            return
        protocol = served.stream.protocol
        reasons = finish.from_object(protocol, whole)
        await self._keep(ctx, route, use, served, protocol, orjson.dumps(whole), reasons)

    async def _keep(
        self,
        ctx: RequestContext,
        route: Route,
        use: CacheUse,
        served: Served,
        protocol: str,
        body: bytes,
        reasons: list[str],
    ) -> None:
        row = ctx.row
        usage = ctx.outcome.usage
        if row is None or usage is None or ctx.outcome.status != 200:
            return
        if len(body) > route.cache.max_entry_bytes or "content_filter" in reasons:
            return
        answer = StoredAnswer(
            protocol=protocol,
            body=body,
            provider=served.target.provider,
            model=served.target.model,
            usage={
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cached_tokens": usage.cached_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
            },
            cost_micro_usd=row.cost_micro_usd,
            stored_at=time.time(),
        )
        await self.store.put(use.key, answer, route.cache.ttl_s)
        _, held = self.store.held()
        if held >= 0:
            self._metrics.answer_cache_bytes.set(held)

    def _cacheable(self, ctx: RequestContext, sampled: bool) -> bool:
        body = ctx.body
        if ctx.drill or ctx.outcome.faults:
            return False
        if (body.get("n") or 1) != 1:
            return False
        temperature = body.get("temperature")
        return sampled or (isinstance(temperature, int | float) and temperature <= 0)

    def _said(self, ctx: RequestContext, result: CacheResult) -> None:
        ctx.outcome.cache = result
        m = self._metrics
        m.child(m.answer_cache, ctx.route_name, _team(ctx), result).inc()


REPLAYABLE = frozenset({OPENAI, ANTHROPIC, RESPONSES})  # wires a stream is replayed from


class Gatherer(Protocol):
    def see(self, event: bytes) -> None: ...

    def whole(self) -> dict[str, Any] | None: ...


def gatherer_for(protocol: str) -> Gatherer | None:
    """What gathers a stream of this wire back into a whole answer (None: not stored)."""
    if protocol == OPENAI:
        return ChatGatherer()
    if protocol == ANTHROPIC:
        return MessageGatherer()
    if protocol == RESPONSES:
        return ResponsesGatherer()
    return None


def replayed(stored: StoredAnswer, with_usage: bool) -> list[bytes] | None:
    """A stored answer as the events of its wire's stream."""
    whole = orjson.loads(stored.body)
    if stored.protocol == OPENAI:
        return chat_events(whole, with_usage)
    if stored.protocol == ANTHROPIC:
        return message_events(whole)
    if stored.protocol == RESPONSES:
        return response_events(whole)
    return None


def cache_key(ctx: RequestContext, route: Route) -> str:
    """`<tenant>:<route>:<sha256>` of what changes the answer."""
    native = ctx.asked.native
    material: dict[str, Any] = {
        "ingress": ctx.ingress,
        "endpoint": ctx.endpoint,
        # A reload that points the route elsewhere starts afresh.
        "targets": [[t.provider, t.model] for t in route.targets],
        "body": _keyed(ctx.body, False),
        # The client's own body too: the chat form may not carry all of it.
        "native": _keyed(native.body, route.prompt_cache.canonical_tools) if native else None,
    }
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    principal = ctx.principal
    tenant = principal.tenant if principal is not None else "-"
    return f"{tenant}:{ctx.route_name}:{digest}"


def tenant_prefix(tenant: str, route: str | None = None) -> str:
    """The keys of one tenant (`team:x`, `key:y`), or of one of its routes."""
    return f"{tenant}:{route}:" if route is not None else f"{tenant}:"


def cache_told(ctx: RequestContext, age_s: float | None = None) -> HeaderList:
    """`x-spillover-cache` (and `age` on a hit)."""
    result = ctx.outcome.cache
    if result is None:
        return []
    told = [(b"x-spillover-cache", result.encode())]
    if age_s is not None:
        told.append((b"age", str(max(0, int(age_s))).encode()))
    return told


def _keyed(body: dict[str, Any], sort_tools: bool) -> dict[str, Any]:
    kept = {k: v for k, v in body.items() if k not in _NOT_IN_KEY}
    items = kept.get("input")
    if isinstance(items, list):  # a Responses input's item ids are made per request
        kept["input"] = [
            {k: v for k, v in i.items() if k != "id"} if isinstance(i, dict) else i for i in items
        ]
    tools = kept.get("tools")
    if sort_tools and isinstance(tools, list):
        kept["tools"] = sorted(tools, key=lambda t: orjson.dumps(t, option=orjson.OPT_SORT_KEYS))
    return kept


def _cache_control(value: bytes | None) -> dict[str, float | None]:
    """`no-cache`, `no-store` and `max-age=N` of a request's Cache-Control."""
    out: dict[str, float | None] = {}
    for part in (value or b"").decode("latin-1")[:256].split(","):
        name, _, arg = part.strip().lower().partition("=")
        if name in ("no-cache", "no-store"):
            out[name] = None
        elif name == "max-age" and arg.strip().isdigit():
            out[name] = float(arg.strip())
    return out


def _older(answer: StoredAnswer, max_age_s: float | None) -> bool:
    return max_age_s is not None and time.time() - answer.stored_at > max_age_s


def _team(ctx: RequestContext) -> str:
    principal = ctx.principal
    return (principal.team or "-") if principal is not None else "-"
