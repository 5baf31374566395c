"""Drills run from the console: the scenario's traffic goes to this gateway's own address
over loopback, through the whole pipeline, with a key minted for the run (admin, so the
drill may set its faults) that is forgotten when the run ends. One drill at a time; the
last runs are kept in memory with their verdicts."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from gateway.drill.faults import FaultTable
from gateway.drill.runner import DrillRun, Gateway, drive
from gateway.drill.scenario import Scenario, shipped
from gateway.drill.verdict import Check, checks, measures
from gateway.errors import Conflict, InvalidRequest
from gateway.http.console.incidents import Incidents
from gateway.keys import Principal, digest

log = logging.getLogger("spillover.console")


@dataclass
class DrillRecord:
    id: str
    scenario: str
    description: str
    started_by: str
    started: float  # epoch seconds
    duration_s: float
    status: str = "running"  # running, passed, failed, error
    elapsed_s: float = 0.0
    run: DrillRun | None = None
    checks: list[Check] = field(default_factory=list)
    measures: dict[str, float | None] = field(default_factory=dict)
    error: str = ""

    @property
    def requests(self) -> int:
        return len(self.run.outcomes) if self.run else 0

    @property
    def errors(self) -> int:
        return sum(1 for o in self.run.outcomes if o.error) if self.run else 0

    def timeline(self) -> list[list[float]]:
        """Per second of the drill: requests answered and errors (uPlot's columns)."""
        seconds = int(self.elapsed_s) + 1
        done, failed = [0.0] * seconds, [0.0] * seconds
        for outcome in self.run.outcomes if self.run else []:
            second = min(seconds - 1, int(outcome.t))
            done[second] += 1
            failed[second] += 1 if outcome.error else 0
        return [[float(s) for s in range(seconds)], done, failed]


class ConsoleDrills:
    def __init__(self, faults: FaultTable, incidents: Incidents, keep: int = 20) -> None:
        self._faults = faults
        self._incidents = incidents
        self._keep = keep
        self.records: OrderedDict[str, DrillRecord] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._scenarios: dict[str, Scenario] | None = None

    @property
    def scenarios(self) -> dict[str, Scenario]:
        """The shipped scenarios by name, read from disk once."""
        if self._scenarios is None:
            self._scenarios = {s.name: s for s in shipped()}
        return self._scenarios

    @property
    def running(self) -> DrillRecord | None:
        return next((r for r in self.records.values() if r.status == "running"), None)

    def start(self, name: str, scale: float, base_url: str, started_by: str) -> DrillRecord:
        if self.running is not None:
            raise Conflict(f"drill {self.running.id} is still running")
        if not 0.01 <= scale <= 1.0:
            raise InvalidRequest("scale must be between 0.01 and 1")
        if name not in self.scenarios:
            raise InvalidRequest(f"no drill scenario {name!r}")
        scenario = self.scenarios[name]
        try:
            scenario = scenario.scaled(scale) if scale != 1.0 else scenario
        except ValueError:  # pydantic's ValidationError: a step below its fault's minimum
            raise InvalidRequest(
                f"scale {scale:g} is too small for {name}: a step would be shorter than its "
                "fault allows"
            ) from None
        record = DrillRecord(
            id=f"d{int(time.time())}-{secrets.token_hex(3)}",
            scenario=name,
            description=scenario.description,
            started_by=started_by,
            started=time.time(),
            duration_s=scenario.traffic.duration_s,
        )
        self.records[record.id] = record
        while len(self.records) > self._keep:
            self.records.popitem(last=False)
        token = secrets.token_urlsafe(32)
        key_digest = digest(token.encode())
        self._faults.minted_keys[key_digest] = Principal(
            key_name=f"console-drill:{started_by}", team=None, routes=None, admin=True
        )
        gateway = Gateway(base_url, token, token)
        self._task = asyncio.get_running_loop().create_task(
            self._run(record, scenario, gateway, key_digest)
        )
        self._incidents.add("drill", f"drill {name} started by {started_by}")
        return record

    async def _run(
        self, record: DrillRecord, scenario: Scenario, gateway: Gateway, key: str
    ) -> None:
        def progress(elapsed: float, run: DrillRun) -> None:
            record.elapsed_s, record.run = elapsed, run

        try:
            run = await drive(scenario, gateway, progress)
            record.run = run
            record.checks = checks(run)
            record.measures = measures(run)
            record.status = "passed" if all(c.ok for c in record.checks) else "failed"
        except Exception as exc:  # the drill's own failure is its verdict, not a crash
            log.warning("console drill %s could not run: %s", record.id, exc)
            record.status, record.error = "error", str(exc)[:500]
        finally:
            self._faults.minted_keys.pop(key, None)
            record.elapsed_s = max(record.elapsed_s, record.duration_s)
        self._incidents.add(
            "drill", f"drill {record.scenario}: {record.status}", bad=record.status != "passed"
        )

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
