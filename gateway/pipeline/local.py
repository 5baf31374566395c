"""What the gateway answers itself — the model list, a token count, a stored response — is
admitted through the key's limits and kept in the ledger (one row, cost 0) like generation:
each costs CPU or memory, so none is free to repeat without bound."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.errors import SpilloverError
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.answer import send_json
from gateway.pipeline.context import RequestContext
from gateway.pipeline.ports import HeaderList, Reply

Answer = tuple[int, bytes, HeaderList]


async def answer_locally(
    ctx: RequestContext,
    limits: Admitter,
    account: Accountant,
    work: Callable[[], Awaitable[Answer]],
    refused: Callable[[SpilloverError], Answer],
    reply: Reply,
) -> None:
    """`work` authenticates (`ctx.principal`), is admitted (`ctx.held_limits`) and answers;
    a SpilloverError is answered by `refused`, in the client's protocol."""
    try:
        status, body, headers = await work()
    except SpilloverError as exc:
        ctx.outcome.error_class = exc.error_class
        status, body, headers = refused(exc)
    finally:
        if ctx.held_limits is not None:
            await limits.release(ctx, ctx.held_limits)
    ctx.outcome.status = status
    account.record(ctx)  # before the answer's last byte, as every row
    await send_json(reply, status, body, headers)


async def admitted(ctx: RequestContext, limits: Admitter) -> None:
    """Through the key's and its team's request and concurrency limits (no route)."""
    ctx.held_limits = await limits.admit(ctx, None)
