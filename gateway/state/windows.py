"""Per-target sliding windows in one process: 1-second buckets of outcomes, and recent
latency samples for p95 and time-per-output-token estimates."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from policies.routing import WindowStats

BUCKET_S = 1.0
KEEP_S = 300
_SAMPLES = 200


@dataclass(slots=True)
class AttemptSample:
    """What one attempt tells its target's window."""

    ok: bool
    rate_limited: bool = False
    ttft_s: float | None = None
    latency_s: float | None = None
    output_tokens: int = 0
    counts: bool = True  # False for failures that say nothing of the target (client's fault)


def _p95(samples: deque[float]) -> float | None:
    if len(samples) < 5:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


@dataclass(slots=True)
class TargetWindow:
    buckets: deque[list[float]] = field(default_factory=deque)  # [bucket, req, fail, 429]
    consecutive_failures: int = 0
    ttft: deque[float] = field(default_factory=lambda: deque(maxlen=_SAMPLES))
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=_SAMPLES))
    tpot_s: float | None = None
    _p95_ttft: float | None = None
    _p95_latency: float | None = None
    _since_p95: int = 0

    def add(self, outcome: AttemptSample, now: float) -> None:
        if outcome.counts:
            bucket = float(int(now / BUCKET_S))
            if not self.buckets or self.buckets[-1][0] != bucket:
                self.buckets.append([bucket, 0.0, 0.0, 0.0])
                while self.buckets and self.buckets[0][0] < bucket - KEEP_S:
                    self.buckets.popleft()
            last = self.buckets[-1]
            last[1] += 1
            if not outcome.ok:
                last[2] += 1
                self.consecutive_failures += 1
            else:
                self.consecutive_failures = 0
            if outcome.rate_limited:
                last[3] += 1
        if outcome.ok:
            if outcome.ttft_s is not None:
                self.ttft.append(outcome.ttft_s)
            if outcome.latency_s is not None:
                self.latency.append(outcome.latency_s)
                if outcome.output_tokens > 1 and outcome.ttft_s is not None:
                    per_token = (outcome.latency_s - outcome.ttft_s) / (outcome.output_tokens - 1)
                    self.tpot_s = (
                        per_token if self.tpot_s is None else (0.8 * self.tpot_s + 0.2 * per_token)
                    )
            # Sorting the samples is the costly part: redo it every 50 answers, or sooner
            # while the estimate does not exist yet.
            self._since_p95 += 1
            if self._since_p95 >= 50 or (self._p95_ttft is None and self._p95_latency is None):
                self._p95_ttft, self._p95_latency = _p95(self.ttft), _p95(self.latency)
                self._since_p95 = 0

    def estimates(self) -> WindowStats:
        """Latency estimates only: what routing needs on every request (no window sums)."""
        return WindowStats(
            consecutive_failures=self.consecutive_failures,
            p95_ttft_s=self._p95_ttft,
            p95_latency_s=self._p95_latency,
            tpot_s=self.tpot_s,
        )

    def stats(self, now: float, window_s: float) -> WindowStats:
        start = int(now / BUCKET_S) - int(window_s / BUCKET_S)
        requests = failures = limited = 0.0
        for bucket, req, fail, rate in reversed(self.buckets):
            if bucket <= start:
                break
            requests += req
            failures += fail
            limited += rate
        return WindowStats(
            int(requests),
            int(failures),
            int(limited),
            self.consecutive_failures,
            self._p95_ttft,
            self._p95_latency,
            self.tpot_s,
        )
