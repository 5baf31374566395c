"""Stored keys and teams as table rows and back: one place for the columns' meaning, read
by the SQLAlchemy tables (changes, PostgreSQL) and the plain SQLite reader alike."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.keyring.records import StoredKey, StoredTeam
from policies.schema import Budget
from policies.schema_base import Limits

KEYS = "spillover_keys"
TEAMS = "spillover_teams"
AUDIT = "spillover_keyring_audit"
VERSION = "spillover_keyring_version"


def as_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def key_row(key: StoredKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "team": key.team,
        "user_id": key.user,
        "role": key.role,
        "priority": key.priority,
        "routes": None if key.routes is None else as_json(list(key.routes)),
        "limits": as_json(key.limits.model_dump(exclude_defaults=True)),
        "budget": as_json(key.budget.model_dump(exclude_defaults=True)),
        "metadata": as_json(key.metadata),
        "secret_sha256": key.secret_sha256,
        "hint": key.hint,
        "created_at": key.created_at,
        "updated_at": key.updated_at,
        "expires_at": key.expires_at,
        "rotated_at": key.rotated_at,
        "revoked_at": key.revoked_at,
        "previous_sha256": key.previous_sha256,
        "previous_until": key.previous_until,
    }


def key_of(row: Any) -> StoredKey:
    return StoredKey(
        name=row["name"],
        team=row["team"],
        user=row["user_id"],
        role=row["role"],
        priority=row["priority"],
        routes=None if row["routes"] is None else tuple(orjson.loads(row["routes"])),
        limits=Limits(**orjson.loads(row["limits"])),
        budget=Budget(**orjson.loads(row["budget"])),
        metadata=orjson.loads(row["metadata"]),
        secret_sha256=row["secret_sha256"],
        hint=row["hint"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        rotated_at=row["rotated_at"],
        revoked_at=row["revoked_at"],
        previous_sha256=row["previous_sha256"],
        previous_until=row["previous_until"],
    )


def team_row(team: StoredTeam) -> dict[str, Any]:
    return {
        "name": team.name,
        "limits": as_json(team.limits.model_dump(exclude_defaults=True)),
        "budget": as_json(team.budget.model_dump(exclude_defaults=True)),
        "metadata": as_json(team.metadata),
        "created_at": team.created_at,
        "updated_at": team.updated_at,
    }


def team_of(row: Any) -> StoredTeam:
    return StoredTeam(
        name=row["name"],
        limits=Limits(**orjson.loads(row["limits"])),
        budget=Budget(**orjson.loads(row["budget"])),
        metadata=orjson.loads(row["metadata"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
