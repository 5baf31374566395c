"""One `/metrics` for the workers and the heavy lane: the lane's series, scraped over its
socket, join this process's families with the label `lane="heavy"` — so request, token and
cost counters sum across both, and a scraper needs one target, as before."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


class _Merged:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(registry: CollectorRegistry, lane_text: str | None) -> bytes:
    """This registry's exposition, with the lane's series merged in when it answered."""
    if not lane_text:
        return generate_latest(registry)
    ours = {family.name: family for family in registry.collect()}
    for theirs in text_string_to_metric_families(lane_text):
        if theirs.name.endswith("_created") or theirs.name.startswith("spillover_heavy_lane"):
            continue  # creation times (inside their counters' families here); a lane has none
        samples = [
            Sample(s.name, {**s.labels, "lane": "heavy"}, s.value, s.timestamp, s.exemplar)
            for s in theirs.samples
        ]
        family = ours.get(theirs.name)
        if family is None or family.type != theirs.type:
            family = Metric(theirs.name, theirs.documentation, theirs.type)
            ours.setdefault(theirs.name, family)
        family.samples.extend(samples)
    return generate_latest(_Merged(list(ours.values())))
