"""The pool's pure parts: prefix hashing, the prefix table, admission and the replica choice."""

from __future__ import annotations

import pytest

from fallback_engine import admission
from fallback_engine.choose import choose
from fallback_engine.load import PoolRequest, ReplicaLoad
from fallback_engine.prefix import PrefixTable, block_hashes, prompt_text
from policies.pool import Admission, Routing

SYSTEM = "You are the support assistant of a large bank. " * 40


def _chat(system: str, user: str) -> dict[str, object]:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}


def test_shared_prefix_gives_the_same_leading_hashes() -> None:
    a = block_hashes(prompt_text(_chat(SYSTEM, "my card is lost")), 16, 256)
    b = block_hashes(prompt_text(_chat(SYSTEM, "what is my balance")), 16, 256)
    other = block_hashes(prompt_text(_chat("Different. " + SYSTEM, "my card is lost")), 16, 256)
    shared = len(SYSTEM) // 64  # 16 tokens x 4 characters per block
    assert len(a) >= shared and a[: shared - 1] == b[: shared - 1]
    assert a[0] != other[0]  # a chain: one changed byte early changes every later hash
    assert len(block_hashes("x" * 63, 16, 256)) == 0  # only full blocks count
    assert len(block_hashes(SYSTEM, 16, 3)) == 3


def test_prefix_table_finds_the_deepest_owner_and_forgets_a_restarted_replica() -> None:
    table = PrefixTable(max_entries=100)
    long = block_hashes(SYSTEM + "tail one", 16, 256)
    table.record(long[:10], "r1")
    table.record(long, "r2")  # the same chain, deeper, sent to r2 later
    assert table.deepest(long, {"r1", "r2"}) == ("r2", len(long))
    assert table.deepest(long, {"r1"}) is None  # r2 now owns every block of the chain
    table.forget("r2")
    assert table.deepest(long, {"r1", "r2"}) is None and len(table) == 0
    many = block_hashes(SYSTEM * 5, 16, 1000)
    table.record(many, "r1")
    assert len(table) == 100  # bounded: the oldest entries went first
    assert table.deepest(many, {"r1"}) == ("r1", len(many))


def _load(name: str, tokens: int = 0, requests: int = 0, **kw: object) -> ReplicaLoad:
    return ReplicaLoad(name, tokens, requests, **kw)  # type: ignore[arg-type]


def test_admission_refuses_by_kv_usage_waiting_and_room_for_long_prompts() -> None:
    policy = Admission(max_kv_usage=0.9, max_waiting=2, long_context_tokens=1_000)
    replicas = [
        _load("full", kv_usage=0.95, waiting=0, kv_capacity_tokens=10_000),
        _load("queued", kv_usage=0.1, waiting=3, kv_capacity_tokens=10_000),
        _load("some-room", kv_usage=0.8, waiting=0, kv_capacity_tokens=10_000),
        _load("roomy", kv_usage=0.2, waiting=1, kv_capacity_tokens=10_000),
        _load("unknown"),  # stale metrics: judged on what we sent it
    ]
    short = PoolRequest(prompt_tokens=200, output_tokens=100)
    fit, refused = admission.eligible(replicas, short, policy)
    assert [r.name for r in fit] == ["some-room", "roomy", "unknown"]
    assert {(r.replica, r.reason) for r in refused} == {("full", "kv_usage"), ("queued", "waiting")}
    long = PoolRequest(prompt_tokens=2_500, output_tokens=500)  # needs 3,000 of 2,000 free
    fit, refused = admission.eligible(replicas, long, policy)
    assert [r.name for r in fit] == ["roomy", "unknown"]
    assert ("some-room", "kv_room") in {(r.replica, r.reason) for r in refused}


def test_tokens_sent_since_the_last_scrape_count_as_kv_in_use() -> None:
    policy = Admission(max_kv_usage=0.9)
    busy = _load("r", kv_usage=0.5, kv_capacity_tokens=1_000, unscraped_tokens=450)
    assert busy.kv_estimate == pytest.approx(0.95)
    assert admission.eligible([busy], PoolRequest(10, 10), policy)[0] == []


def test_committed_output_counts_before_a_scrape_sees_it_and_shared_blocks_count_once() -> None:
    from fallback_engine.replica import Hold, Replica

    replica = Replica("http://r")
    prefix = block_hashes(SYSTEM, 16, 256)  # the same long system prompt for three requests
    hold = Hold(len(prefix) * 16 + 40 + 400, prefix, 16)
    for _ in range(3):
        replica.hold(hold)
    assert replica.committed_tokens == len(prefix) * 16 + 3 * (40 + 400)
    policy = Admission(max_kv_usage=0.6)
    # The last scrape saw little in use (the prompts are cached, the output not yet made),
    # but what these requests will grow to is promised already.
    scraped = replica.load(now=0.0, stale_after_s=5)
    load = ReplicaLoad(
        "r", 0, 3, kv_usage=0.1, kv_capacity_tokens=2_500,
        committed_tokens=scraped.committed_tokens,
    )  # fmt: skip
    assert load.kv_estimate == pytest.approx(replica.committed_tokens / 2_500)
    assert replica.committed_tokens / 2_500 > 0.6
    assert admission.eligible([load], PoolRequest(40, 400), policy)[0] == []
    # Stale metrics: judged on what this gateway has committed there.
    stale = ReplicaLoad("r", 0, 3, kv_capacity_tokens=3_000, committed_tokens=600)
    assert stale.kv_estimate == pytest.approx(0.2)
    for _ in range(3):
        replica.unhold(hold)
    assert replica.committed_tokens == 0 and not replica._held_blocks


def test_sheddable_traffic_stops_first_and_retry_after_follows_the_drain_rate() -> None:
    policy = Admission(max_kv_usage=0.92, sheddable_kv_usage=0.7)
    calm = [_load("a", kv_usage=0.5), _load("b", kv_usage=0.6)]
    hot = [_load("a", kv_usage=0.8), _load("b", kv_usage=0.7)]
    assert not admission.shed_sheddable(calm, policy)
    assert admission.shed_sheddable(hot, policy)
    assert admission.retry_after_s(30_000, 10_000) == 3
    assert admission.retry_after_s(10, 10_000) == 1  # at least a second
    assert admission.retry_after_s(10**9, 1) == 60  # at most a minute
    assert admission.retry_after_s(100, 0) == 5  # no rate known yet


def test_round_robin_least_requests_and_least_tokens() -> None:
    replicas = [_load("a", 900, 1), _load("b", 100, 5), _load("c", 500, 2)]
    request = PoolRequest(100, 100)
    table = PrefixTable()
    rr = Routing(strategy="round_robin")
    assert [choose(replicas, request, rr, table, t).replica for t in range(4)] == list("abca")
    assert choose(replicas, request, Routing(strategy="least_requests"), table, 0).replica == "a"
    assert choose(replicas, request, Routing(strategy="least_tokens"), table, 0).replica == "b"


def test_prefix_affinity_follows_the_prefix_until_the_load_guard_says_no() -> None:
    routing = Routing(load_factor=1.25, load_slack_tokens=1_000)
    table = PrefixTable()
    prefix = block_hashes(SYSTEM + "question", 16, 256)
    request = PoolRequest(500, 100, prefix)
    idle = [_load("a", 0), _load("b", 0), _load("c", 0)]
    first = choose(idle, request, routing, table, 0)
    assert first.reason == "least_loaded" and first.replica == "a"
    table.record(prefix, "b")
    # b holds the prefix and, with this request, stays within mean * 1.25 + 1,000: affinity.
    near = [_load("a", 0), _load("b", 1_000), _load("c", 600)]
    pick = choose(near, request, routing, table, 0)
    assert (pick.replica, pick.reason, pick.matched_blocks) == ("b", "affinity", len(prefix))
    # b is far above the mean: the guard sends the request to the least-loaded replica.
    far = [_load("a", 0), _load("b", 6_000), _load("c", 600)]
    guarded = choose(far, request, routing, table, 0)
    assert (guarded.replica, guarded.reason) == ("a", "load_guard")


def test_a_replica_busy_prefilling_a_long_prompt_loses_its_affinity_for_a_while() -> None:
    routing = Routing()
    table = PrefixTable()
    prefix = block_hashes(SYSTEM, 16, 256)  # 29 blocks: ~464 tokens the owner has cached
    table.record(prefix, "owner")
    request = PoolRequest(600, 50, prefix)

    def owner(pending: int) -> ReplicaLoad:
        return ReplicaLoad("owner", 1_000, 1, pending_prefill_tokens=pending)

    other = ReplicaLoad("other", 1_000, 1)
    # 136 uncached tokens at the owner against 600 elsewhere: the cache wins...
    assert choose([owner(0), other], request, routing, table, 0).reason == "affinity"
    assert choose([owner(400), other], request, routing, table, 0).replica == "owner"
    # ...until the owner has a long document to prefill before this request's turn.
    busy = choose([owner(6_000), other], request, routing, table, 0)
    assert (busy.replica, busy.reason) == ("other", "load_guard")


def test_requests_finished_since_the_last_scrape_give_their_kv_back() -> None:
    stale = _load("r", kv_usage=0.8, kv_capacity_tokens=1_000, released_tokens=500)
    assert stale.kv_estimate == pytest.approx(0.3)
    assert admission.eligible([stale], PoolRequest(10, 10), Admission(max_kv_usage=0.5))[0]


def test_a_refused_connection_ejects_a_replica_but_a_connect_timeout_only_counts() -> None:
    from fallback_engine.lease import Lease
    from fallback_engine.pool import Pool
    from policies.pool import VllmPoolProvider

    config = VllmPoolProvider(
        kind="vllm_pool", model="m", replicas=["http://a", "http://b"],
        health={"unhealthy_after": 2},
    )  # type: ignore[arg-type]  # fmt: skip
    pool = Pool("local", config)
    a, b = pool.replicas["http://a"], pool.replicas["http://b"]
    a.state = b.state = "ready"
    # A busy replica (the last one standing, perhaps) is not dead: one timeout is one
    # failed health check, and only the health check's threshold takes it out.
    assert not pool.report_unreachable(Lease(a.url, a, 10), "timeout", refused=False)
    assert a.state == "ready"
    assert pool.report_unreachable(Lease(a.url, a, 10), "timeout", refused=False)
    assert a.state == "unhealthy"
    # The other requests in flight there when it went fail too: it is out already.
    assert pool.report_unreachable(Lease(a.url, a, 10), "connect_failed", refused=True)
    # A refused or reset connection: the process is gone, out at once.
    # The last ready replica does not leave on timeouts alone (the health check decides) …
    for _ in range(3):
        assert not pool.report_unreachable(Lease(b.url, b, 10), "timeout", refused=False)
    assert b.state == "ready"
    # … but a refused or reset connection means the process is gone: out at once.
    assert pool.report_unreachable(Lease(b.url, b, 10), "connect_failed", refused=True)
    assert b.state == "unhealthy" and pool.ready() == []


def test_a_replica_whose_window_the_prompt_fills_is_never_sent_it() -> None:
    policy = Admission()
    small = ReplicaLoad("small", 0, 0, max_model_len=2048)
    large = ReplicaLoad("large", 0, 0, max_model_len=32768)
    unknown = ReplicaLoad("unknown", 0, 0)  # no /v1/models card yet: judged on the rest
    prompt = PoolRequest(4000, 100)
    fit, refused = admission.eligible([small, large, unknown], prompt, policy)
    assert [r.name for r in fit] == ["large", "unknown"]
    assert [(r.replica, r.reason) for r in refused] == [("small", "context")]
    assert not admission.too_large_for_any([small, large], prompt, None)
    assert admission.too_large_for_any([small], prompt, None)  # spill at once, never queue
    assert not admission.too_large_for_any([small], PoolRequest(2000, 100), None)
