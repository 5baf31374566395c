"""Issuing, changing, rotating and revoking stored keys and teams: each input checked against
the config being served (names the YAML already uses, routes and teams that exist), written
in one transaction with its audit entry, then loaded here and announced to the others."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.keyring import secrets
from gateway.keyring.keyring import Keyring
from gateway.keyring.records import (
    KeyCreate,
    KeyState,
    KeyUpdate,
    Rotate,
    StoredKey,
    StoredTeam,
    TeamCreate,
    TeamUpdate,
)
from gateway.keys import digest
from policies.schema import GatewayConfig

MAX_PAGE = 500


class KeyringAdmin:
    def __init__(self, keyring: Keyring, config: Callable[[], GatewayConfig]) -> None:
        self._keyring = keyring
        self._config = config

    # --- teams -----------------------------------------------------------------------

    async def create_team(self, body: TeamCreate, actor: str) -> dict[str, Any]:
        if body.name in self._config().teams:
            raise Conflict(f"team {body.name!r} is defined in the config file")
        now = time.time()
        team = StoredTeam(body.name, body.limits, body.budget, body.metadata, now, now)
        await (await self._keyring.writable()).add_team(team, actor)
        await self._keyring.changed()
        return team.public()

    async def update_team(self, name: str, body: TeamUpdate, actor: str) -> dict[str, Any]:
        given = body.model_dump(exclude_unset=True)

        def change(team: StoredTeam) -> StoredTeam:
            return dataclasses.replace(
                team, **{k: getattr(body, k) for k in given}, updated_at=time.time()
            )

        team = await (await self._keyring.writable()).change_team(name, change, actor)
        await self._keyring.changed()
        return team.public()

    async def teams(self, limit: int, after: str | None) -> dict[str, Any]:
        found = (await self._keyring.current()).teams
        names = sorted(n for n in found if after is None or n > after)
        page = names[: _page(limit)]
        shown = [found[n].public() for n in page]
        return {"teams": shown, "next": page[-1] if len(names) > len(page) else None}

    async def team(self, name: str) -> dict[str, Any]:
        team = (await self._keyring.current()).teams.get(name)
        if team is None:
            raise NotFound(f"no team {name[:64]!r}")
        return team.public()

    # --- keys ------------------------------------------------------------------------

    async def create_key(self, body: KeyCreate, actor: str) -> tuple[dict[str, Any], str]:
        config = self._config()
        if any(k.name == body.name for k in config.keys):
            raise Conflict(f"key {body.name!r} is defined in the config file")
        self._check(config, body.team, body.routes)
        now = time.time()
        expires_at = body.expires_at or (now + body.expires_in_s if body.expires_in_s else None)
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("expires_at is in the past", param="expires_at")
        secret = secrets.mint()
        key = StoredKey(
            name=body.name,
            team=body.team,
            user=body.user,
            role=body.role,
            priority=body.priority,
            routes=tuple(body.routes) if body.routes is not None else None,
            limits=body.limits,
            budget=body.budget,
            metadata=body.metadata,
            secret_sha256=digest(secret.encode()),
            hint=secrets.hint(secret),
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
        )
        await (await self._keyring.writable()).add_key(key, actor)
        await self._keyring.changed()
        return key.public(now), secret

    async def update_key(self, name: str, body: KeyUpdate, actor: str) -> dict[str, Any]:
        given = body.model_dump(exclude_unset=True)
        self._check(
            self._config(),
            body.team if "team" in given else None,
            body.routes if "routes" in given else None,
        )
        now = time.time()
        if body.expires_at is not None and body.expires_at <= now:
            raise InvalidRequest("expires_at is in the past", param="expires_at")
        changes: dict[str, Any] = {k: getattr(body, k) for k in given}
        if "routes" in changes and changes["routes"] is not None:
            changes["routes"] = tuple(changes["routes"])

        def change(key: StoredKey) -> StoredKey:
            _still_active(key)
            return dataclasses.replace(key, **changes, updated_at=now)

        key = await (await self._keyring.writable()).change_key(name, change, "update", actor)
        await self._keyring.changed()
        return key.public(now)

    async def rotate_key(self, name: str, body: Rotate, actor: str) -> tuple[dict[str, Any], str]:
        secret = secrets.mint()
        now = time.time()

        def change(key: StoredKey) -> StoredKey:
            _still_active(key)
            return dataclasses.replace(
                key,
                secret_sha256=digest(secret.encode()),
                hint=secrets.hint(secret),
                previous_sha256=key.secret_sha256 if body.grace_s > 0 else None,
                previous_until=now + body.grace_s if body.grace_s > 0 else None,
                rotated_at=now,
                updated_at=now,
            )

        key = await (await self._keyring.writable()).change_key(name, change, "rotate", actor)
        await self._keyring.changed()
        return key.public(now), secret

    async def revoke_key(self, name: str, actor: str) -> dict[str, Any]:
        now = time.time()

        def change(key: StoredKey) -> StoredKey:
            if key.revoked_at is not None:
                raise Conflict(f"key {name!r} is revoked already")
            return dataclasses.replace(
                key, revoked_at=now, previous_sha256=None, previous_until=None, updated_at=now
            )

        key = await (await self._keyring.writable()).change_key(name, change, "revoke", actor)
        await self._keyring.changed()
        return key.public(now)

    async def keys(
        self, limit: int, after: str | None, team: str | None, state: KeyState | None
    ) -> dict[str, Any]:
        found = (await self._keyring.current()).keys
        now = time.time()
        names = sorted(
            name
            for name, key in found.items()
            if (after is None or name > after)
            and (team is None or key.team == team)
            and (state is None or key.state(now) == state)
        )
        page = names[: _page(limit)]
        return {
            "keys": [found[n].public(now) for n in page],
            "next": page[-1] if len(names) > len(page) else None,
        }

    async def key(self, name: str) -> dict[str, Any]:
        key = (await self._keyring.current()).keys.get(name)
        if key is None:
            raise NotFound(f"no key {name[:64]!r}")
        return key.public(time.time())

    async def audit(
        self, limit: int, before_id: int | None, subject: str | None
    ) -> list[dict[str, Any]]:
        return await (await self._keyring.writable()).audit(_page(limit), before_id, subject)

    def _check(self, config: GatewayConfig, team: str | None, routes: list[str] | None) -> None:
        if team is not None and not self._team_exists(config, team):
            raise InvalidRequest(f"no team {team!r}: create it first", param="team")
        unknown = [r for r in routes or () if r not in config.routes]
        if unknown:
            shown = ", ".join(repr(r[:64]) for r in unknown[:5])
            raise InvalidRequest(f"no such route: {shown}", param="routes")

    def _team_exists(self, config: GatewayConfig, team: str) -> bool:
        return (
            team in config.teams
            or team in self._keyring.snapshot.teams
            or any(k.team == team for k in config.keys)
        )


def _still_active(key: StoredKey) -> None:
    if key.revoked_at is not None:
        raise Conflict(f"key {key.name!r} is revoked: it cannot be changed")


def _page(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))
