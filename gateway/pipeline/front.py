"""The pipeline's front door: the one object a transport calls. `Pipeline.handle` takes a
request as it arrived and a way to answer it (`ports.py`), and runs the stages in order —
prepare (api → admit → shape → decide), serve (attempt), relay (the answer, whole or
streamed), finish (release, account, settle, trace) — in the client's own protocol.

The ledger row is kept before the answer's last byte leaves: once a client has its whole
answer, a killed gateway can no longer lose what it was billed. `finish` runs once, after
the last byte, whatever happened before."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass

from gateway import logs
from gateway.accounting.row import LedgerRow
from gateway.errors import InternalError, SpilloverError
from gateway.ids import new_id
from gateway.keys import KeyStore
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.answer import Answerer
from gateway.pipeline.attempt import AttemptRunner
from gateway.pipeline.budgets import Budgets
from gateway.pipeline.context import RequestContext
from gateway.pipeline.ingress.anthropic_messages import AnthropicProtocol
from gateway.pipeline.ingress.base import ClientProtocol
from gateway.pipeline.ingress.openai_chat import OpenAIProtocol
from gateway.pipeline.ingress.openai_responses import ResponsesProtocol
from gateway.pipeline.local_answers import COUNT_TOKENS, count_tokens, model_list
from gateway.pipeline.ports import HandOff, Inbound, Reply
from gateway.pipeline.prepare import Preparer, client_request_id
from gateway.pipeline.response_cache import ResponseCache, gatherer_for
from gateway.pipeline.stored_responses import PREFIX as STORED_RESPONSES
from gateway.pipeline.stored_responses import stored_response
from gateway.state.responses import HeavyRequest, ResponseStore
from gateway.tracing import RequestSpan, Tracing
from policies.schema import GatewayConfig

log = logging.getLogger("spillover")


@dataclass(frozen=True, slots=True)
class Stages:
    """What the stages of one config generation are built from (`gateway/assembly.py`)."""

    config: GatewayConfig
    keys: KeyStore
    preparer: Preparer
    attempts: AttemptRunner
    admitter: Admitter
    budgets: Budgets
    accountant: Accountant
    responses: ResponseStore
    metrics: GatewayMetrics
    tracing: Tracing
    answers: ResponseCache


class Pipeline:
    """The request path for one loaded config; swapped whole on reload."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self.config = stages.config
        self.keys = stages.keys
        self.in_flight = 0
        self._answer = Answerer(stages.metrics, stages.attempts, self._keep_row)
        self._protocols: dict[str, ClientProtocol] = {
            "/v1/chat/completions": OpenAIProtocol("chat"),
            "/v1/completions": OpenAIProtocol("completions"),
            "/v1/embeddings": OpenAIProtocol("embeddings"),
            "/v1/messages": AnthropicProtocol(),
            "/v1/responses": ResponsesProtocol(stages.responses, stages.metrics.responses_unstored),
        }
        self._created = int(time.time())

    def handles(self, path: str) -> bool:
        return (
            path in self._protocols
            or path in ("/v1/models", COUNT_TOKENS)
            or path.startswith(STORED_RESPONSES)
        )

    async def handle(self, inbound: Inbound, reply: Reply, hand_off: HandOff | None) -> None:
        """Answer one request; `hand_off` serves one found heavy once read (the heavy lane)."""
        # Ours, always: a client's id could repeat another tenant's (in the ledger, the logs
        # and upstream); theirs is kept beside it, OpenAI's way (`x-client-request-id`).
        request_id = new_id()
        protocol = self._protocols.get(inbound.path)
        if protocol is None:
            await self._answer_locally(inbound, request_id, reply)
            return
        ctx = RequestContext(
            request_id=request_id, endpoint=protocol.endpoint, ingress=protocol.ingress
        )
        headers = inbound.headers
        ctx.client_request_id = client_request_id(
            headers.get(b"x-client-request-id") or headers.get(b"x-request-id")
        )
        span = self.stages.tracing.request(protocol.endpoint, headers)
        if span is not None:
            ctx.trace_id = span.trace_id
            ctx.traced = span.recording
        logged_as = logs.request_id.set(request_id)  # on every log line of this request
        traced_as = logs.trace_id.set(ctx.trace_id)
        serving = self.stages.metrics.serving
        serving.count += 1
        self.in_flight += 1
        try:
            await self._serve(ctx, protocol, inbound, reply, hand_off)
        finally:
            self.in_flight -= 1
            serving.count -= 1
            await self._finish(ctx, span)
            logs.trace_id.reset(traced_as)
            logs.request_id.reset(logged_as)

    async def _serve(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        inbound: Inbound,
        reply: Reply,
        hand_off: HandOff | None,
    ) -> None:
        """Answer; the row is kept just before the answer's last part (`Answerer`)."""
        try:
            route, targets = await self.stages.preparer(ctx, protocol, inbound)
            answers = self.stages.answers
            use = answers.plan(ctx, route, inbound.headers)
            if use is not None:
                stored = await answers.lookup(ctx, use)
                if stored is not None:
                    await self._answer.cached(ctx, protocol, stored, reply)
                    return
            served = await self.stages.attempts.run(ctx, route, targets)
            ctx.outcome.served_by = served.target
            self._answer.dropped(ctx, served.dropped)
            if served.response is not None:
                await self._answer.whole(ctx, protocol, route, served, reply)
                if use is not None:
                    await answers.keep(ctx, route, use, served)
                return
            assert served.stream is not None
            gathered = gatherer_for(served.stream.protocol) if use is not None else None
            await self._answer.stream(ctx, protocol, route, served, reply, gathered)
            if use is not None and gathered is not None:
                await answers.keep_stream(ctx, route, use, served, gathered)
        except HeavyRequest as heavy:
            assert hand_off is not None, "a request was found heavy with no lane to take it"
            ctx.handed_off = True
            try:
                await hand_off(heavy.body)
            except SpilloverError as exc:
                ctx.handed_off = False
                await self._answer.error(ctx, protocol, exc, reply)
        except SpilloverError as exc:
            if ctx.outcome.status:  # the answer has begun: its stream ends as it can
                raise
            await self._answer.error(ctx, protocol, exc, reply)
        except Exception as exc:  # a bug of ours: still an answer in the client's protocol
            log.error(
                "request %s failed inside the gateway: %s\n%s",
                ctx.request_id,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            if ctx.outcome.status:
                raise
            failure = InternalError("the gateway failed on this request")
            await self._answer.error(ctx, protocol, failure, reply)

    def _keep_row(self, ctx: RequestContext) -> LedgerRow:
        """The request's one row, kept once."""
        if ctx.row is None:
            assert not ctx.handed_off, "the heavy lane keeps a handed-off request's row"
            ctx.row = self.stages.accountant.record(ctx)
        return ctx.row

    async def _finish(self, ctx: RequestContext, span: RequestSpan | None) -> None:
        """Release what was held, keep the row if no answer's last part did, settle the
        money, end the span. Once per request."""
        if ctx.finished:
            return
        ctx.finished = True
        stages = self.stages
        for release in ctx.releases:
            release()
        if ctx.held_limits is not None:
            await stages.admitter.release(ctx, ctx.held_limits)
        row = None if ctx.handed_off else self._keep_row(ctx)
        if ctx.reservation is not None:
            await stages.budgets.settle(ctx.reservation, row.cost_micro_usd if row else None)
        if span is not None:
            stages.tracing.request_done(span, row, ctx.outcome.attempts, ctx.outcome.finish_reasons)

    async def _answer_locally(self, inbound: Inbound, request_id: str, reply: Reply) -> None:
        """The model list, a token count, a stored response: no upstream."""
        s = self.stages
        path = inbound.path
        if path == "/v1/models":
            await model_list(
                s.config, s.keys, s.admitter, s.accountant, self._created, inbound, request_id,
                reply,
            )  # fmt: skip
        elif path == COUNT_TOKENS:
            await count_tokens(
                s.config, s.keys, s.admitter, s.accountant, inbound, request_id, reply
            )
        else:
            await stored_response(
                s.keys, s.responses, s.admitter, s.accountant, inbound, request_id, reply
            )
