"""A drill scenario as a YAML file: traffic to drive, faults on a timeline, and the SLOs the
gateway must hold while they are active (config/drills/*.yaml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gateway.drill.faults import FaultSpec
from policies.loader import load_model
from policies.schema import WireProtocol
from policies.schema_base import Strict

SHIPPED = Path(__file__).resolve().parent.parent.parent / "config" / "drills"


class Traffic(Strict):
    route: str = "gpt-4o"
    # The clients' protocol: OpenAI chat completions, or Anthropic's Messages API.
    protocol: WireProtocol = "openai"
    rate: float = Field(20.0, gt=0)  # requests per second, Poisson arrivals
    duration_s: float = Field(30.0, gt=0)
    stream_share: float = Field(0.3, ge=0, le=1)
    max_tokens: int = Field(16, ge=1)
    prompt_chars: int = Field(200, ge=1)
    concurrency: int = Field(64, ge=1)  # the generator's bound; beyond it arrivals are dropped
    budget_ms: int | None = Field(None, ge=1)  # sent as x-spillover-budget-ms


class Step(Strict):
    at_s: float = Field(ge=0)
    fault: FaultSpec


class Expect(Strict):
    error_rate_max: float | None = Field(0.01, ge=0, le=1)
    p99_latency_ms_max: float | None = Field(None, gt=0)
    failover_time_s_max: float | None = Field(None, gt=0)
    # Share of the successful requests during a fault served by another provider.
    fallback_share_min: float | None = Field(None, ge=0, le=1)
    cost_increase_pct_max: float | None = None
    # A Redis fault: fault start → the gateway reports it runs on local state, and fault end
    # → it reports shared state (breakers, windows, limits) again.
    state_fallback_time_s_max: float | None = Field(None, gt=0)
    state_resync_time_s_max: float | None = Field(None, gt=0)
    lost_rows_max: int | None = Field(0, ge=0)


class Scenario(Strict):
    name: str
    description: str = ""
    traffic: Traffic = Traffic()
    steps: list[Step] = Field(min_length=1)
    expect: Expect = Expect()

    def scaled(self, factor: float) -> Scenario:
        """The same drill in `factor` of the time (tests run drills in seconds)."""
        traffic = self.traffic.model_copy(update={"duration_s": self.traffic.duration_s * factor})
        steps = [
            Step(
                at_s=s.at_s * factor,
                fault=s.fault.model_copy(update={"duration_s": s.fault.duration_s * factor}),
            )
            for s in self.steps
        ]
        # Validated again: a step scaled below its fault's minimum is refused here, by name,
        # not where the fault is built mid-drill.
        scaled = self.model_copy(update={"traffic": traffic, "steps": steps})
        return type(self).model_validate(scaled.model_dump())


def find(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = SHIPPED / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    raise FileNotFoundError(f"no drill scenario {name_or_path!r} (see `spillover drill list`)")


def load(name_or_path: str) -> Scenario:
    return load_model(find(name_or_path), Scenario)


def shipped() -> list[Scenario]:
    return [load(str(p)) for p in sorted(SHIPPED.glob("*.yaml"))]
