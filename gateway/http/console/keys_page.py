"""The console's Keys page: stored keys and teams and their recent changes for everyone
signed in; admins issue, rotate and revoke. A new secret is rendered once, in the answer to
the form that made it, and never again."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.errors import InvalidRequest
from gateway.http.console.site import Console
from gateway.keyring.records import KeyCreate, Rotate

log = logging.getLogger("spillover.console")
_AUDIT_SHOWN = 20


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def keys(request: Request) -> Response:
    console = _console(request)
    return await _page(console, request, console.who(request))


async def create(request: Request) -> Response:
    console = _console(request)
    session, principal = who = console.who(request, act=True)
    fields = await console.form(request, session)
    body = _key_create(fields)
    key, secret = await console.port.keyring.create_key(body, principal.key_name)
    log.warning("console: %s issued key %s", principal.key_name, key["name"])
    return await _page(console, request, who, secret=secret, secret_for=f"New key {key['name']}")


async def rotate(request: Request) -> Response:
    console = _console(request)
    session, principal = who = console.who(request, act=True)
    fields = await console.form(request, session)
    try:
        body = Rotate(grace_s=float(fields.get("grace_s") or 3600))
    except (ValueError, ValidationError):
        raise InvalidRequest("the grace period is 0 to 604800 seconds") from None
    name = request.path_params["name"]
    key, secret = await console.port.keyring.rotate_key(name, body, principal.key_name)
    log.warning("console: %s rotated key %s", principal.key_name, name)
    return await _page(
        console, request, who, secret=secret, secret_for=f"Key {key['name']}, rotated"
    )


async def revoke(request: Request) -> Response:
    console = _console(request)
    session, principal = console.who(request, act=True)
    await console.form(request, session)
    name = request.path_params["name"]
    await console.port.keyring.revoke_key(name, principal.key_name)
    log.warning("console: %s revoked key %s", principal.key_name, name)
    return RedirectResponse("/ui/keys", 303)


async def _page(
    console: Console, request: Request, who: Any, secret: str = "", secret_for: str = ""
) -> Response:
    port = console.port
    if not port.keyring_enabled:
        return console.render("keys.html", request, who, page="keys", enabled=False)
    keyring = port.keyring
    listed = await keyring.keys(500, None, None, None)
    teams = (await keyring.teams(500, None))["teams"]
    config = port.config()
    team_names = sorted({t["name"] for t in teams} | set(config.teams))
    return console.render(
        "keys.html", request, who, page="keys", enabled=True, keys=listed["keys"],
        teams=teams, team_names=team_names, audit=await keyring.audit(_AUDIT_SHOWN, None, None),
        secret=secret, secret_for=secret_for,
    )  # fmt: skip


def _key_create(fields: dict[str, str]) -> KeyCreate:
    """The form's fields as the API's input: the same checks, the same messages."""
    body: dict[str, Any] = {"name": fields.get("name", ""), "role": fields.get("role", "user")}
    if fields.get("team"):
        body["team"] = fields["team"]
    try:
        if fields.get("rpm"):
            body["limits"] = {"rpm": int(fields["rpm"])}
        if fields.get("daily_usd"):
            body["budget"] = {"daily_usd": float(fields["daily_usd"])}
        return KeyCreate(**body)
    except ValueError as exc:  # a ValidationError is a ValueError
        problems = exc.errors() if isinstance(exc, ValidationError) else []
        said = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems[:5])
        raise InvalidRequest(said or "rpm and the budget are numbers") from None
