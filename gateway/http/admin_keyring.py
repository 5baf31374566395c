"""`/admin/keys`, `/admin/teams` and `/admin/audit`: keys and teams as data. Admins issue,
change, rotate and revoke; viewers read. A secret is in exactly two answers — the one that
created it and the one that rotated to it — and nowhere else, ever."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request

from gateway.errors import AuthenticationFailed, LedgerUnavailable, NotFound, PermissionDenied
from gateway.http.admin_port import AdminPort
from gateway.keyring.records import (
    KeyCreate,
    KeyState,
    KeyUpdate,
    Rotate,
    TeamCreate,
    TeamUpdate,
)
from gateway.keys import Principal

Limit = Annotated[int, Query(ge=1, le=500)]


def keyring_router(port: AdminPort) -> APIRouter:
    """Teams, keys and the audit log, behind one check: admins for every route, viewers for
    reads."""

    def caller(request: Request, authorization: str | None = Header(default=None)) -> Principal:
        """Admins for every route; viewers for reads."""
        if not port.keyring_enabled:
            raise NotFound("keys as data are off (keyring.enabled: false)")
        try:
            principal = port.authenticate(authorization.encode() if authorization else None)
        except AuthenticationFailed as exc:
            raise HTTPException(401, exc.message) from None
        if principal.admin or (principal.viewer and request.method == "GET"):
            return principal
        raise PermissionDenied("this key may not change keys or teams")

    router = APIRouter(tags=["keys"])
    caller_dep = Depends(caller)
    router.include_router(_teams(port, caller_dep))
    router.include_router(_keys(port, caller_dep))
    return router


def _teams(port: AdminPort, caller_dep: Any) -> APIRouter:
    router = APIRouter()

    @router.post("/admin/teams", status_code=201)
    async def create_team(body: TeamCreate, who: Principal = caller_dep) -> dict[str, Any]:
        """A team: its limits and budget are shared by its keys."""
        return await port.keyring.create_team(body, who.key_name)

    @router.get("/admin/teams")
    async def list_teams(
        _: Principal = caller_dep, limit: Limit = 100, after: str | None = None
    ) -> dict[str, Any]:
        """Stored teams by name, a page at a time (`next` is the next page's `after`)."""
        return await port.keyring.teams(limit, after)

    @router.get("/admin/teams/{name}")
    async def show_team(name: str, _: Principal = caller_dep) -> dict[str, Any]:
        return await port.keyring.team(name)

    @router.patch("/admin/teams/{name}")
    async def update_team(
        name: str, body: TeamUpdate, who: Principal = caller_dep
    ) -> dict[str, Any]:
        """Change a team's limits, budget or metadata; every replica within a second."""
        return await port.keyring.update_team(name, body, who.key_name)

    @router.get("/admin/teams/{name}/spend")
    async def team_spend(
        name: str, _: Principal = caller_dep, since: str = "30d"
    ) -> dict[str, Any]:
        await port.keyring.team(name)
        return await _spend(port, "team", name, since)

    return router


def _keys(port: AdminPort, caller_dep: Any) -> APIRouter:
    router = APIRouter()

    @router.post("/admin/keys", status_code=201)
    async def create_key(body: KeyCreate, who: Principal = caller_dep) -> dict[str, Any]:
        """A key; its secret is in this answer and never again."""
        key, secret = await port.keyring.create_key(body, who.key_name)
        return {"key": key, "secret": secret}

    @router.get("/admin/keys")
    async def list_keys(
        _: Principal = caller_dep,
        limit: Limit = 100,
        after: str | None = None,
        team: str | None = None,
        state: KeyState | None = None,
    ) -> dict[str, Any]:
        """Stored keys by name, filtered by team or state, a page at a time."""
        return await port.keyring.keys(limit, after, team, state)

    @router.get("/admin/keys/{name}")
    async def show_key(name: str, _: Principal = caller_dep) -> dict[str, Any]:
        return await port.keyring.key(name)

    @router.patch("/admin/keys/{name}")
    async def update_key(name: str, body: KeyUpdate, who: Principal = caller_dep) -> dict[str, Any]:
        """Change limits, budget, routes, expiry, team, user or metadata (never the role)."""
        return await port.keyring.update_key(name, body, who.key_name)

    @router.post("/admin/keys/{name}/rotate")
    async def rotate_key(
        name: str, who: Principal = caller_dep, body: Rotate | None = None
    ) -> dict[str, Any]:
        """A new secret; the old one keeps working for `grace_s` (default an hour)."""
        key, secret = await port.keyring.rotate_key(name, body or Rotate(), who.key_name)
        return {"key": key, "secret": secret}

    @router.post("/admin/keys/{name}/revoke")
    async def revoke_key(name: str, who: Principal = caller_dep) -> dict[str, Any]:
        """Refused at once here, on every replica within a second."""
        return {"key": await port.keyring.revoke_key(name, who.key_name)}

    @router.get("/admin/keys/{name}/spend")
    async def key_spend(name: str, _: Principal = caller_dep, since: str = "30d") -> dict[str, Any]:
        await port.keyring.key(name)
        return await _spend(port, "key", name, since)

    @router.get("/admin/audit")
    async def audit(
        _: Principal = caller_dep,
        limit: Limit = 100,
        before: int | None = Query(None, ge=1),
        subject: str | None = None,
    ) -> dict[str, Any]:
        """Every change to keys and teams, newest first: who, what, before and after."""
        entries = await port.keyring.audit(limit, before, subject)
        return {"entries": entries, "next": entries[-1]["id"] if len(entries) == limit else None}

    return router


async def _spend(port: AdminPort, dimension: str, name: str, since: str) -> dict[str, Any]:
    """What the ledger holds for one key or team since `since` (e.g. `30d`)."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.accounting.reports import parse_when, spend  # the SQL toolkit, on demand

    now = time.time()
    try:
        rows = await spend(port.config().ledger.url, [dimension], parse_when(since, now), None,
                           port.prices())  # fmt: skip
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise LedgerUnavailable("the ledger cannot be read right now", retry_after=2.0) from exc
    found = next((r for r in rows if r.group.get(dimension) == name), None)
    total = found.as_dict() if found is not None else {"requests": 0, "spend_usd": 0.0}
    return {dimension: name, "since": since, **total}
