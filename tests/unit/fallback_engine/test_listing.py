"""The replica list behind `discover: {file}` and the `launch` rules around it: what a
reader accepts, what it refuses (and keeps the last set), and what a config may ask for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from fallback_engine.listing import MAX_BYTES, ListingError, read_listing, write_listing
from policies.pool import VllmPoolProvider


def test_written_lists_read_back_sorted_and_a_missing_file_lists_none(tmp_path: Path) -> None:
    path = tmp_path / "run" / "replicas.json"
    assert read_listing(path) == []
    write_listing(path, ["http://10.0.0.2:8000/", "http://10.0.0.1:8000"])
    assert read_listing(path) == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    write_listing(path, [])
    assert read_listing(path) == []
    assert [p.name for p in path.parent.iterdir()] == ["replicas.json"]  # no temp file left


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{", "not JSON"),
        (b'["http://a:1"]', "expected"),
        (b'{"replicas": [1]}', "expected"),
        (b'{"replicas": ["file:///etc/passwd"]}', "is not http"),
        (b'{"replicas": ["http://a"]}', "is not http"),
        (b'{"replicas": ["http://u:p@a:1"]}', "only scheme, host and port"),
        (b'{"replicas": ["http://a:1/v1"]}', "only scheme, host and port"),
        (json.dumps({"replicas": [f"http://h{i}:1" for i in range(257)]}).encode(), "more than"),
        (b" " * (MAX_BYTES + 1), "over"),
    ],
)
def test_a_bad_file_is_refused_with_its_reason(tmp_path: Path, body: bytes, why: str) -> None:
    path = tmp_path / "replicas.json"
    path.write_bytes(body)
    with pytest.raises(ListingError, match=why):
        read_listing(path)


GPU = {"usd_per_hour": 1, "memory_gb": 24, "kv_tokens_per_replica": 1000, "tokens_per_s": 10}
CAPACITY = {"model_memory_gb": 10, "gpus": {"a10": GPU}}


def _pool(**fields: object) -> VllmPoolProvider:
    return VllmPoolProvider.model_validate({"kind": "vllm_pool", "model": "m", **fields})


def test_launch_rules() -> None:
    launch = {"model_path": "/m", "replicas": ["http://127.0.0.1:8001"], "scale": "schedule"}
    pool = _pool(discover={"file": "r.json"}, capacity=CAPACITY, launch=launch)
    assert pool.launch_urls == ["http://127.0.0.1:8001"] and pool.launch_gpu == "a10"
    wrong = [
        ({"discover": {"dns": "x", "file": "r.json"}}, "one of them"),
        ({"discover": {"dns": "pool.svc"}, "launch": launch}, "not launched locally"),
        ({"discover": {"file": "r.json"}, "launch": {**launch, "replicas": []}}, "URLs to start"),
        ({"replicas": ["http://a:1"], "launch": launch}, "lists its replicas"),
        ({"discover": {"file": "r.json"}, "launch": launch}, "needs the pool's capacity"),
        (
            {"discover": {"file": "r.json"}, "capacity": CAPACITY, "launch": {**launch, "gpu": "h100"}},
            "not one of capacity.gpus",
        ),
        (
            {"discover": {"file": "r.json"}, "launch": launch,
             "capacity": {**CAPACITY, "gpus": {"a10": GPU, "l4": GPU}}},
            "name the GPU type",
        ),
    ]  # fmt: skip
    for fields, why in wrong:
        with pytest.raises(ValidationError, match=why):
            _pool(**fields)


def test_a_gateway_keeps_its_replicas_when_the_file_goes_bad(tmp_path: Path) -> None:
    import asyncio

    from fallback_engine.membership import Membership

    path = tmp_path / "replicas.json"
    write_listing(path, ["http://127.0.0.1:8001"])
    members = Membership("local", _pool(discover={"file": str(path)}), None, lambda *_: None)
    assert asyncio.run(members._discovered()) == {"http://127.0.0.1:8001"}
    path.write_text("{half")
    assert asyncio.run(members._discovered()) is None  # the loop keeps the last set
