"""OpenTelemetry traces, when `tracing.otlp_endpoint` is set: one server span per request and
one client span per upstream attempt (until its answer or first event), with the GenAI
semantic conventions and Spillover's own attributes, exported over OTLP/HTTP in batches off
the event loop. A client's W3C `traceparent` is the parent; the attempt's context goes to
the upstream in its own `traceparent`. Off, nothing is imported or created: every entry
point returns at its first line.

Prompt and completion content are never put on spans; why an answer ended is
(`gen_ai.response.finish_reasons`, read from the answer only while tracing is on)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from gateway.attempt_record import AttemptRecord
from policies.schema import GatewayConfig, TracingConfig

# Read by `traced()` and `span()` on every call: a module flag is the cheapest check.
ENABLED = False
_TRACER: Any = None  # the tracer of the running gateway, for `span()`
_PROPAGATOR: Any = None  # W3C trace context, made once when tracing starts
_OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}


class RowFacts(Protocol):
    """What a request's span reads of its ledger row (`gateway.accounting.row.LedgerRow`,
    frozen: read-only here too)."""

    @property
    def route(self) -> str | None: ...

    @property
    def endpoint(self) -> str: ...

    @property
    def ingress(self) -> str: ...

    @property
    def status(self) -> int: ...

    @property
    def provider(self) -> str | None: ...

    @property
    def model(self) -> str | None: ...

    @property
    def fell_back(self) -> bool: ...

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    @property
    def cost_micro_usd(self) -> int | None: ...

    @property
    def error_class(self) -> str | None: ...


def traced(headers: Mapping[str, str]) -> Mapping[str, str]:
    """`headers` with the current attempt's `traceparent` (unchanged when tracing is off);
    an unsampled request passes its trace on too, marked unsampled."""
    if not ENABLED:
        return headers
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return {**headers, **carrier} if carrier else headers


# What `span()` and `Tracing.attempt()` give while tracing is off: one shared context that
# yields None, so the request path makes no generator per call.
_NO_SPAN: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()

Attributes = Mapping[str, str | int | float | bool]


def span(name: str, attributes: Attributes) -> contextlib.AbstractContextManager[Any]:
    """A span of the current request's trace around a step that waits (the pool's
    admission); nothing when tracing is off."""
    if not ENABLED:
        return _NO_SPAN
    current: contextlib.AbstractContextManager[Any] = _TRACER.start_as_current_span(
        name, attributes=dict(attributes)
    )
    return current


class RequestSpan:
    """A request's span and the context it made current (detached when it ends)."""

    def __init__(self, span: Any, token: object) -> None:
        self.span = span
        self.token = token
        # Sampled: only then is an attribute worth computing (the rest are no-ops).
        self.recording: bool = span.is_recording()

    @property
    def trace_id(self) -> str:
        return f"{self.span.get_span_context().trace_id:032x}"


class Tracing:
    def __init__(self, config: TracingConfig, exporter: Any = None) -> None:
        """`exporter`: an SDK SpanExporter to use instead of OTLP (tests: in-memory), spans
        handed to it as each ends."""
        global ENABLED
        self.enabled = config.otlp_endpoint is not None or exporter is not None
        self._tracer: Any = None
        self._provider: Any = None
        self._kinds: dict[str, str] = {}
        if self.enabled:
            global _TRACER, _PROPAGATOR
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            self._start(config, exporter)
            _PROPAGATOR = TraceContextTextMapPropagator()
            ENABLED, _TRACER = True, self._tracer

    def _start(self, config: TracingConfig, exporter: Any) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        headers = {name: value.get_secret_value() for name, value in config.headers.items()}
        provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            otlp = OTLPSpanExporter(endpoint=config.otlp_endpoint, headers=headers, timeout=5)
            provider.add_span_processor(
                BatchSpanProcessor(otlp, schedule_delay_millis=config.export_every_ms)
            )
        self._provider = provider
        self._tracer = provider.get_tracer("spillover")

    def configure(self, config: GatewayConfig) -> None:
        """Each provider's kind (`gen_ai.provider.name`), from the config in force."""
        self._kinds = {name: provider.kind for name, provider in config.providers.items()}

    def request(self, endpoint: str, headers: Mapping[bytes, bytes]) -> RequestSpan | None:
        if not self.enabled:
            return None
        from opentelemetry import context, trace

        carrier = {
            name: value.decode("latin-1")
            for name, value in ((k, headers.get(k.encode())) for k in ("traceparent", "tracestate"))
            if value is not None
        }
        parent = _PROPAGATOR.extract(carrier)
        operation = _OPERATIONS.get(endpoint, endpoint)
        span = self._tracer.start_span(operation, context=parent, kind=trace.SpanKind.SERVER)
        span.set_attribute("gen_ai.operation.name", operation)
        token = context.attach(trace.set_span_in_context(span, parent))
        return RequestSpan(span, token)

    def request_done(
        self,
        handle: RequestSpan,
        row: RowFacts | None,
        attempts: Sequence[AttemptRecord],
        finish_reasons: Sequence[str] | None,
    ) -> None:
        """The request's attributes from its ledger row (none when the heavy lane served it
        and keeps its row), its skipped targets as events; end."""
        from opentelemetry import context

        span = handle.span
        try:
            if handle.recording and row is not None:
                self._describe(span, row, attempts, finish_reasons)
        finally:
            span.end()
            context.detach(handle.token)  # type: ignore[arg-type]

    def _describe(
        self,
        span: Any,
        row: RowFacts,
        attempts: Sequence[AttemptRecord],
        finish_reasons: Sequence[str] | None,
    ) -> None:
        if row.route is not None:
            operation = _OPERATIONS.get(row.endpoint, row.endpoint)
            span.update_name(f"{operation} {row.route}")
            span.set_attribute("gen_ai.request.model", row.route)
            span.set_attribute("spillover.route", row.route)
        span.set_attribute("spillover.ingress", row.ingress)
        span.set_attribute("http.response.status_code", row.status)
        if row.provider is not None and row.model is not None:
            span.set_attribute("gen_ai.response.model", row.model)
            span.set_attribute("gen_ai.provider.name", self._kinds.get(row.provider, ""))
            span.set_attribute("spillover.target", f"{row.provider}/{row.model}")
            span.set_attribute("spillover.fallback", bool(row.fell_back))
            span.set_attribute("gen_ai.usage.input_tokens", row.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", row.completion_tokens)
        if finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", tuple(finish_reasons))
        if row.cost_micro_usd is not None:
            span.set_attribute("spillover.cost_micro_usd", row.cost_micro_usd)
        for attempt in attempts:
            if attempt.outcome == "skipped":
                span.add_event(
                    "spillover.skip",
                    {
                        "spillover.target": f"{attempt.provider}/{attempt.model}",
                        "spillover.skip_reason": attempt.error_class or "",
                    },
                )
        if row.status >= 400 or row.error_class:
            _failed(span, row.error_class or str(row.status))

    def attempt(
        self, operation: str, provider: str, model: str, address: str
    ) -> contextlib.AbstractContextManager[Any]:
        """A client span around one upstream attempt, current while it runs (so the upstream
        call carries its `traceparent`)."""
        if not self.enabled or not _recording():
            return _NO_SPAN  # unsampled: the request's own context goes upstream
        return self._attempt(operation, provider, model, address)

    @contextlib.contextmanager
    def _attempt(self, operation: str, provider: str, model: str, address: str) -> Iterator[Any]:
        from opentelemetry import trace

        name = f"{_OPERATIONS.get(operation, operation)} {model}"
        with self._tracer.start_as_current_span(
            name, kind=trace.SpanKind.CLIENT, record_exception=False, set_status_on_exception=False
        ) as span:
            span.set_attribute("gen_ai.operation.name", _OPERATIONS.get(operation, operation))
            span.set_attribute("gen_ai.request.model", model)
            span.set_attribute("gen_ai.provider.name", self._kinds.get(provider, ""))
            span.set_attribute("spillover.target", f"{provider}/{model}")
            if address:
                span.set_attribute("server.address", address)
            yield span

    def shutdown(self) -> None:
        """Send what is batched, then stop the exporter; nothing is traced after."""
        global ENABLED, _TRACER
        if self._provider is not None:
            self._provider.shutdown()
        if _TRACER is self._tracer:
            ENABLED, _TRACER = False, None


def _recording() -> bool:
    from opentelemetry import trace

    return bool(trace.get_current_span().is_recording())


def failed(span: Any, error_type: str) -> None:
    """Mark an attempt span failed with our error class (`error.type`)."""
    if span is not None:
        _failed(span, error_type)


def _failed(span: Any, error_type: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR))
