"""What happened at one target of one request: served, failed, skipped or cancelled. Listed
in the error a client gets when every target failed, in `x-spillover-attempts`, in the
metrics and in the ledger's `attempts_detail`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What happened at one target; listed in errors, headers, metrics and the ledger."""

    provider: str
    model: str
    outcome: Literal["ok", "failed", "skipped", "cancelled"]
    error_class: str | None
    upstream_status: int | None
    detail: str
    latency_ms: float

    @classmethod
    def ok(cls, provider: str, model: str, latency_ms: float) -> AttemptRecord:
        return cls(provider, model, "ok", None, 200, "", latency_ms)

    @classmethod
    def failed(
        cls,
        provider: str,
        model: str,
        error_class: str,
        status: int | None,
        detail: str,
        latency_ms: float,
    ) -> AttemptRecord:
        return cls(provider, model, "failed", error_class, status, detail, latency_ms)

    @classmethod
    def skipped(cls, provider: str, model: str, reason: str, detail: str) -> AttemptRecord:
        return cls(provider, model, "skipped", reason, None, detail, 0.0)

    @classmethod
    def cancelled(cls, provider: str, model: str, reason: str) -> AttemptRecord:
        return cls(provider, model, "cancelled", reason, None, "", 0.0)

    def as_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "model": self.model,
            "outcome": self.outcome,
            "error": self.error_class,
            "status": self.upstream_status,
            "detail": self.detail,
            "latency_ms": round(self.latency_ms, 1),
        }
