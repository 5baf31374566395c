"""From what the clients saw to a verdict per SLO, and the report files: report.json,
report.md and a self-contained report.html with a timeline chart."""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.drill.runner import DrillRun


@dataclass(frozen=True)
class Check:
    name: str
    measured: float | None
    limit: float
    ok: bool
    unit: str = ""


def _in_fault(run: DrillRun, t: float) -> bool:
    return any(w.start <= t < w.end for w in run.windows)


def measures(run: DrillRun) -> dict[str, float | None]:
    outcomes = run.outcomes
    total = len(outcomes)
    errors = sum(1 for o in outcomes if o.error)
    latencies = sorted(o.latency_s for o in outcomes if not o.error)
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else None
    faulted = {w.provider for w in run.windows if w.provider}
    first_fault = min((w.start for w in run.windows), default=None)
    served_elsewhere = sorted(
        o.t for o in outcomes
        if first_fault is not None and o.t >= first_fault and not o.error
        and o.provider and o.provider not in faulted
    )  # fmt: skip
    during = [o for o in outcomes if _in_fault(run, o.t) and not o.error]
    fallback = sum(1 for o in during if o.provider not in faulted)
    base, hit = run.baseline_cost_per_request, run.fault_cost_per_request
    answered = sum(1 for o in outcomes if o.status)
    return {
        "requests": float(total),
        "error_rate": errors / total if total else None,
        "p50_latency_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_latency_ms": p99 * 1000 if p99 is not None else None,
        "detection_time_s": (
            run.breaker_opened_at - first_fault
            if run.breaker_opened_at is not None and first_fault is not None
            else None
        ),
        "failover_time_s": (
            served_elsewhere[0] - first_fault
            if faulted and served_elsewhere and first_fault is not None
            else None
        ),
        "fallback_share": fallback / len(during) if during else None,
        "state_fallback_time_s": _since(run.state_local_at, first_fault),
        "state_resync_time_s": _since(run.state_shared_again_at, last_redis_end(run)),
        "cost_increase_pct": (hit / base - 1) * 100 if base and hit is not None else None,
        "lost_rows": (
            float(max(0, answered - run.ledger_rows)) if run.ledger_rows is not None else None
        ),
        "dropped_by_generator": float(run.dropped),
    }


def _since(at: float | None, start: float | None) -> float | None:
    return at - start if at is not None and start is not None else None


def last_redis_end(run: DrillRun) -> float | None:
    return max((w.end for w in run.windows if w.kind == "redis_down"), default=None)


def checks(run: DrillRun) -> list[Check]:
    m = measures(run)
    e = run.scenario.expect
    out: list[Check] = []

    def at_most(name: str, key: str, limit: float | None, unit: str = "") -> None:
        if limit is not None:
            value = m[key]
            out.append(Check(name, value, limit, value is not None and value <= limit, unit))

    at_most("client-visible error rate", "error_rate", e.error_rate_max)
    at_most("p99 latency", "p99_latency_ms", e.p99_latency_ms_max, "ms")
    at_most("failover time", "failover_time_s", e.failover_time_s_max, "s")
    at_most("cost increase", "cost_increase_pct", e.cost_increase_pct_max, "%")
    at_most("on local state after the Redis fault began", "state_fallback_time_s",
            e.state_fallback_time_s_max, "s")  # fmt: skip
    at_most("sharing state again after the Redis fault ended", "state_resync_time_s",
            e.state_resync_time_s_max, "s")  # fmt: skip
    at_most("lost ledger rows", "lost_rows", e.lost_rows_max)
    if e.fallback_share_min is not None:
        value = m["fallback_share"]
        ok = value is not None and value >= e.fallback_share_min
        out.append(Check("share served by the fallback during the fault", value,
                         e.fallback_share_min, ok))  # fmt: skip
    return out


def _timeline(run: DrillRun) -> str:
    """The chart as a base64 PNG: rate, error rate, p50/p99 latency, provider shares, with
    the fault windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    duration = max(1, int(run.scenario.traffic.duration_s + 1))
    seconds = list(range(duration))
    buckets: list[list[Any]] = [[] for _ in seconds]
    for o in run.outcomes:
        buckets[min(duration - 1, int(o.t))].append(o)
    providers = sorted({o.provider for o in run.outcomes if o.provider})
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    rate = [len(b) for b in buckets]
    errors = [sum(o.error for o in b) / len(b) if b else 0 for b in buckets]
    axes[0].plot(seconds, rate, label="requests/s")
    ax_err = axes[0].twinx()
    ax_err.plot(seconds, errors, color="tab:red", label="error rate")
    ax_err.set_ylim(0, 1)
    axes[0].set_ylabel("requests/s")
    ax_err.set_ylabel("error rate", color="tab:red")

    def pct(b: list[Any], q: float) -> float:
        values = sorted(o.latency_s * 1000 for o in b if not o.error)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    axes[1].plot(seconds, [pct(b, 0.5) for b in buckets], label="p50")
    axes[1].plot(seconds, [pct(b, 0.99) for b in buckets], label="p99")
    axes[1].set_ylabel("latency ms")
    axes[1].legend(loc="upper right")
    shares = [[sum(o.provider == p for o in b) / len(b) if b else 0 for b in buckets]
              for p in providers]  # fmt: skip
    if providers:
        axes[2].stackplot(seconds, shares, labels=providers)
        axes[2].legend(loc="upper right")
    axes[2].set_ylabel("share served")
    axes[2].set_xlabel("seconds since the drill started")
    for ax in axes:
        for w in run.windows:
            ax.axvspan(w.start, min(w.end, duration), color="orange", alpha=0.2)
    fig.suptitle(f"drill {run.scenario.name}: fault windows shaded")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def write_report(run: DrillRun, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    m = measures(run)
    results = checks(run)
    passed = all(c.ok for c in results)
    data = {
        "scenario": run.scenario.model_dump(),
        "drill_id": run.drill_id,
        "started": run.started_wall,
        "verdict": "pass" if passed else "fail",
        "measures": m,
        "errors_by_status": _errors_by_status(run),
        "checks": [asdict(c) for c in results],
        "fault_windows": [asdict(w) for w in run.windows],
    }
    paths = [directory / "report.json", directory / "report.md", directory / "report.html"]
    paths[0].write_text(json.dumps(data, indent=2))
    rows = "\n".join(
        f"| {c.name} | {_fmt(c.measured)}{c.unit} | {_fmt(c.limit)}{c.unit} | "
        f"{'pass' if c.ok else 'FAIL'} |"
        for c in results
    )
    timing = (
        f"- detection time (fault start → first breaker open): {_fmt(m['detection_time_s'])} s\n"
        f"- failover time (fault start → first request served by the fallback): "
        f"{_fmt(m['failover_time_s'])} s\n"
        + (
            f"- shared state: local {_fmt(m['state_fallback_time_s'])} s after the Redis fault "
            f"began, shared again {_fmt(m['state_resync_time_s'])} s after it ended\n"
            if last_redis_end(run) is not None
            else ""
        )
        + f"- requests: {int(m['requests'] or 0)}, dropped by the generator: "
        f"{int(m['dropped_by_generator'] or 0)}\n"
    )
    markdown = (
        f"# Drill `{run.scenario.name}`: {'PASS' if passed else 'FAIL'}\n\n"
        f"{run.scenario.description}\n\n{timing}\n"
        f"| SLO | measured | limit | verdict |\n|---|---:|---:|---|\n{rows}\n"
    )
    paths[1].write_text(markdown)
    table = "".join(
        f"<tr><td>{html.escape(c.name)}</td><td>{_fmt(c.measured)}{c.unit}</td>"
        f"<td>{_fmt(c.limit)}{c.unit}</td><td class={'pass' if c.ok else 'fail'}>"
        f"{'pass' if c.ok else 'FAIL'}</td></tr>"
        for c in results
    )
    paths[2].write_text(
        "<!doctype html><meta charset=utf-8><title>drill report</title><style>"
        "body{font-family:sans-serif;max-width:62em;margin:2em auto}td,th{padding:.3em .8em;"
        "border-bottom:1px solid #ddd}.pass{color:#080}.fail{color:#c00;font-weight:bold}"
        f"</style><h1>Drill {html.escape(run.scenario.name)}: "
        f"<span class={'pass' if passed else 'fail'}>{'PASS' if passed else 'FAIL'}</span></h1>"
        f"<p>{html.escape(run.scenario.description)}</p>"
        f"<img alt='timeline' src='data:image/png;base64,{_timeline(run)}'>"
        f"<pre>{html.escape(timing)}</pre>"
        f"<table><tr><th>SLO</th><th>measured</th><th>limit</th><th>verdict</th></tr>{table}"
        "</table>"
    )
    return paths


def _errors_by_status(run: DrillRun) -> dict[str, int]:
    """0 is no HTTP answer; 200 is a stream that ended in an error event."""
    out: dict[str, int] = {}
    for o in run.outcomes:
        if o.error:
            out[str(o.status)] = out.get(str(o.status), 0) + 1
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
