"""A Responses client whose store fails as its answer completes: the answer it paid for still
comes back, the chain ends there (its next turn is a clear 404), and a metric counts it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests.support.inprocess import FakeProvider, completion, running

ROUTE = """\
  chat:
    targets:
      - {provider: primary, model: m1}
"""


async def test_a_store_that_fails_costs_the_chain_not_the_answer(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [completion("first"), completion("second")])
    async with running(tmp_path, ROUTE, {"primary": primary}) as gw:
        stored = await gw.client.post("/v1/responses", json={"model": "chat", "input": "hi"})
        assert stored.status_code == 200
        follow = {"model": "chat", "input": "again", "previous_response_id": stored.json()["id"]}
        assert (await gw.client.post("/v1/responses", json=follow)).status_code == 200
        # The store's table is gone (dropped off the event loop, which the ledger shares).
        await asyncio.to_thread(_drop_store, gw.ledger_path)
        lost = await gw.client.post("/v1/responses", json={"model": "chat", "input": "hi"})
        assert lost.status_code == 200 and lost.json()["output"][0]["content"][0]["text"]
        metrics = (await gw.client.get("/metrics")).text
        assert "spillover_responses_unstored_total 1.0" in metrics
        chained = await gw.client.post(
            "/v1/responses",
            json={"model": "chat", "input": "more", "previous_response_id": lost.json()["id"]},
        )
        assert chained.status_code == 503  # the store cannot answer: ours, never a 500
        assert chained.json()["error"]["code"] == "ledger_unavailable"


def _drop_store(ledger: Path) -> None:
    with sqlite3.connect(ledger, timeout=30) as db:
        db.execute("DROP TABLE spillover_responses")
