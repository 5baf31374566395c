"""What the gateway answers itself — the model list, a token count, a stored response — is
admitted through the key's limits and kept in the ledger (one row, cost 0) like generation:
each costs CPU or memory, so none is free to repeat without bound."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Send

from gateway.errors import SpilloverError
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.context import RequestContext

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, bytes, Headers]


async def answer_locally(
    ctx: RequestContext,
    limits: Admitter,
    account: Accountant,
    work: Callable[[], Awaitable[Answer]],
    refused: Callable[[SpilloverError], Answer],
    send: Send,
) -> None:
    """`work` authenticates (`ctx.principal`), is admitted (`ctx.admission`) and answers;
    a SpilloverError is answered by `refused`, in the client's protocol."""
    try:
        status, body, headers = await work()
    except SpilloverError as exc:
        ctx.error_class = exc.code or exc.error_type
        status, body, headers = refused(exc)
    finally:
        if ctx.admission is not None:
            await limits.release(ctx, ctx.admission)
    ctx.status = status
    account.record(ctx)  # before the answer's last byte, as every row
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def admitted(ctx: RequestContext, limits: Admitter) -> None:
    """Through the key's and its team's request and concurrency limits (no route)."""
    ctx.admission = await limits.admit(ctx, None)
