"""`spillover sim-vllm`: the simulated engine behind vLLM's OpenAI-compatible HTTP surface —
`/v1/chat/completions` and `/v1/completions` (stream and not, usage with `cached_tokens`),
`/v1/models`, `/health` (503 while the model "loads") and `/metrics`. `/_sim/config` turns
knobs while it runs (unhealthy, a slower device, the model loaded in N seconds from now) for
tests and drills."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from fallback_engine.sim.engine import Sequence, SimEngine, SimParams, tokenize
from fallback_engine.sim.metrics import SimMetrics

_WORDS = ("the", "pool", "spills", "over", "when", "tokens", "wait", "and", "cache", "warms")


def _error(status: int, message: str, kind: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _checked(body: dict[str, Any], prompt_tokens: int, limit: int) -> int | web.Response:
    """The request's max_tokens as vLLM (0.32) settles it, or its refusal, in its words:
    a prompt that fills the context is 400 (`param: input_tokens`), a max_tokens past the
    context or below 1 is 400 (`param: max_tokens`), a sampling parameter of the wrong type
    400 (`param: body.<name>`). A prompt that fits with too large a max_tokens is not an
    error: the output is capped at what the context has left."""
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return _error(400, f"1 validation error: body.{name}: Input should be a valid number",
                          "Bad Request", f"body.{name}")  # fmt: skip
    if prompt_tokens >= limit:
        return _error(400, f"This model's maximum context length is {limit} tokens. However, "
                      f"your prompt contains at least {limit + 1} input tokens, which exceeds "
                      "this limit even without any output tokens. Please reduce the length of "
                      f"the input prompt. (parameter=input_tokens, value={limit + 1})",
                      "BadRequestError", "input_tokens")  # fmt: skip
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    if asked is None:
        return limit - prompt_tokens
    if isinstance(asked, bool) or not isinstance(asked, int):
        return _error(400, "1 validation error: body.max_tokens: Input should be a valid integer",
                      "Bad Request", "body.max_tokens")  # fmt: skip
    if asked < 1:
        return _error(400, f"max_tokens must be at least 1, got {asked}. "
                      f"(parameter=max_tokens, value={asked})",
                      "BadRequestError", "max_tokens")  # fmt: skip
    if asked > limit:
        return _error(400, f"max_tokens={asked} cannot be greater than max_model_len={limit}. "
                      f"Please request fewer output tokens. (parameter=max_tokens, value={asked})",
                      "BadRequestError", "max_tokens")  # fmt: skip
    return min(asked, limit - prompt_tokens)


def chat_prompt(body: dict[str, Any]) -> str:
    """A ChatML rendering, like the chat template of the real test model."""
    parts = []
    if isinstance(body.get("tools"), list):
        parts.append("<|im_start|>tools\n" + orjson.dumps(body["tools"]).decode() + "<|im_end|>\n")
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        role = message.get("role", "user") if isinstance(message, dict) else "user"
        parts.append(f"<|im_start|>{role}\n{content or ''}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


class SimReplica:
    def __init__(self, model: str, params: SimParams, load_s: float = 0.0, warmup_ms: float = 0.0):
        self.model = model
        self.params = params
        self.engine = SimEngine(params)
        self.metrics = SimMetrics(self.engine, model)
        self.engine.observe = self.metrics
        self.healthy = True
        self._load_s = load_s
        self._warmup_ms = warmup_ms
        self._loaded_at: float | None = None
        self._warm = warmup_ms <= 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None and time.monotonic() >= self._loaded_at

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.render_metrics)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/_sim/config", self.get_config)
        app.router.add_post("/_sim/config", self.set_config)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _: web.Application) -> None:
        self._loaded_at = time.monotonic() + self._load_s
        self._tasks.append(asyncio.create_task(self.engine.run()))

    async def _stop(self, _: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _unavailable(self) -> web.Response | None:
        if not self.loaded:
            return _error(503, "model is loading", "ServiceUnavailableError")
        if not self.healthy:
            return _error(503, "engine is unhealthy", "ServiceUnavailableError")
        return None

    async def health(self, _: web.Request) -> web.Response:
        return self._unavailable() or web.Response(status=200)

    async def render_metrics(self, _: web.Request) -> web.Response:
        self.metrics.loaded.set(1 if self.loaded else 0)
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def models(self, _: web.Request) -> web.Response:
        if (refusal := self._unavailable()) is not None:
            return refusal
        card = {"id": self.model, "object": "model", "owned_by": "vllm",
                "max_model_len": self.params.max_model_len}  # fmt: skip
        return web.json_response({"object": "list", "data": [card]}, dumps=_dumps)

    async def get_config(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"healthy": self.healthy, "extra_step_ms": self.engine.extra_step_ms}, dumps=_dumps
        )

    async def set_config(self, request: web.Request) -> web.Response:
        knobs = await request.json()
        if "healthy" in knobs:
            self.healthy = bool(knobs["healthy"])
        if "load_s" in knobs:
            self._loaded_at = time.monotonic() + float(knobs["load_s"])
        if "extra_step_ms" in knobs:
            self.engine.extra_step_ms = float(knobs["extra_step_ms"])
        if knobs.get("reset_cache"):
            self.engine.blocks.reset()
        return await self.get_config(request)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        if (refusal := self._unavailable()) is not None:
            return refusal
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "invalid JSON", "BadRequestError")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object", "BadRequestError")
        if body.get("model") != self.model:
            return _error(404, f"The model `{body.get('model')}` does not exist. Valid aliases: "
                          f"{self.model}.", "NotFoundError", "model")  # fmt: skip
        text = chat_prompt(body) if chat else str(body.get("prompt", ""))
        prompt = tokenize(text)
        checked = _checked(body, len(prompt), self.params.max_model_len)
        if isinstance(checked, web.Response):
            return checked
        max_tokens = checked
        if not self._warm:
            self._warm = True
            await asyncio.sleep(self._warmup_ms / 1000)  # kernels compile on the first request
        if self.params.api_overhead_ms:
            await asyncio.sleep(self.params.api_overhead_ms / 1000)
        seq = self.engine.submit(prompt, int(max_tokens))
        stream = bool(body.get("stream"))
        prefix = "chatcmpl-" if chat else "cmpl-"
        reply_id = prefix + uuid.uuid4().hex[:16]
        try:
            if stream:
                return await self._stream(request, seq, body, reply_id, chat)
            return await self._whole(seq, reply_id, chat)
        finally:
            if seq.finish_reason is None:
                self.engine.abort(seq)

    def _usage(self, seq: Sequence) -> dict[str, Any]:
        return {
            "prompt_tokens": len(seq.prompt),
            "total_tokens": len(seq.prompt) + seq.output,
            "completion_tokens": seq.output,
            "prompt_tokens_details": {"cached_tokens": seq.cached_tokens},
        }

    async def _whole(self, seq: Sequence, reply_id: str, chat: bool) -> web.Response:
        while await seq.tokens.get() is not None:
            pass
        text = " ".join(_WORDS[i % len(_WORDS)] for i in range(seq.output))
        reason = seq.finish_reason or "length"
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        payload = {
            "id": reply_id,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice],
            "usage": self._usage(seq),
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def _stream(
        self, request: web.Request, seq: Sequence, body: dict[str, Any], reply_id: str, chat: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: dict[str, Any] | str, reason: str | None) -> bytes:
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": reason}
            if chat:
                choice["delta"] = delta
            else:
                choice["text"] = delta
            event = {"id": reply_id, "object": kind, "created": created, "model": self.model,
                     "choices": [choice]}  # fmt: skip
            return b"data: " + orjson.dumps(event) + b"\n\n"

        first = True
        while (token := await seq.tokens.get()) is not None:
            if chat and first:  # like vLLM: the role chunk goes out with the first token
                await response.write(chunk({"role": "assistant", "content": ""}, None))
            first = False
            n, last = token
            word = " " + _WORDS[n % len(_WORDS)]
            reason = "length" if last else None
            await response.write(chunk({"content": word} if chat else word, reason))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {"id": reply_id, "object": kind, "created": created, "model": self.model,
                     "choices": [], "usage": self._usage(seq)}  # fmt: skip
            await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def serve(
    host: str, ports: list[int], model: str, params: SimParams, load_s: float, warmup_ms: float
) -> None:
    """Run one simulated replica per port until cancelled."""
    runners = []
    for i, port in enumerate(ports):
        own = dataclasses.replace(params, seed=params.seed + i)
        replica = SimReplica(model, own, load_s, warmup_ms)
        runner = web.AppRunner(replica.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()
