"""Requests waiting for room in the pool: a heap, critical first, in arrival order within a
priority. Each waiter holds the future its request awaits."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fallback_engine.load import PoolRequest
from policies.pool import PRIORITY_RANK

T = TypeVar("T")


@dataclass(order=True)
class Waiter(Generic[T]):
    rank: int
    seq: int
    request: PoolRequest = field(compare=False)
    future: asyncio.Future[T] = field(compare=False)


class WaitQueue(Generic[T]):
    def __init__(self) -> None:
        self._heap: list[Waiter[T]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, request: PoolRequest) -> Waiter[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        waiter = Waiter(PRIORITY_RANK[request.priority], next(self._seq), request, future)
        heapq.heappush(self._heap, waiter)
        return waiter

    def head(self) -> Waiter[T] | None:
        """The first waiter still waiting (those given up on are dropped on the way)."""
        while self._heap and self._heap[0].future.done():
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None

    def pop(self) -> Waiter[T]:
        return heapq.heappop(self._heap)

    def remove(self, waiter: Waiter[T]) -> None:
        with contextlib.suppress(ValueError):  # already handed out or failed
            self._heap.remove(waiter)
            heapq.heapify(self._heap)

    def tokens(self) -> int:
        return sum(w.request.tokens for w in self._heap)

    def fail_all(self, error: Exception) -> None:
        for waiter in self._heap:
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._heap.clear()
