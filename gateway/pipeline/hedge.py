"""Racing attempts at different targets: the first to answer wins, the others are cancelled
(their connections closed) and listed as `cancelled/hedge_lost`. Deciding *whether* to race
stays with the attempt stage; this module only runs the race."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from gateway.attempt_record import AttemptRecord
from gateway.errors import UpstreamFailure
from gateway.pipeline.context import RequestContext
from gateway.providers.base import UpstreamStream
from policies.route import Target


class Racer(Protocol):
    """What a racing attempt returns: anything with an optional open stream to close."""

    stream: UpstreamStream | None


T = TypeVar("T", bound=Racer)


async def first_answer(
    ctx: RequestContext,
    tasks: dict[asyncio.Task[T], Target],
    on_failure: Callable[[Target, UpstreamFailure], Awaitable[None]],
) -> T:
    """The first task to succeed; failures are reported as they come, and the last one is
    raised when every task failed."""
    pending = set(tasks)
    last: UpstreamFailure | None = None
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if failure is None:
                await _cancel(ctx, pending, tasks)
                return task.result()
            if not isinstance(failure, UpstreamFailure):
                await _cancel(ctx, pending, tasks)
                raise failure
            await on_failure(tasks[task], failure)
            last = failure
    assert last is not None
    raise last


async def _cancel(
    ctx: RequestContext, pending: set[asyncio.Task[T]], tasks: dict[asyncio.Task[T], Target]
) -> None:
    for task in pending:
        task.cancel()
    for task in pending:
        try:
            served = await task
        except (asyncio.CancelledError, UpstreamFailure):
            target = tasks[task]
            ctx.outcome.attempts.append(
                AttemptRecord.cancelled(target.provider, target.model, "hedge_lost")
            )
            continue
        if served.stream is not None:  # it answered in the same instant: close it
            await served.stream.aclose()
