"""What the keyring holds — stored keys and teams — and what the admin API takes to make and
change them. Inputs are strict (`extra="forbid"`) and bounded the way the tables are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.pool import Priority
from policies.schema import Budget
from policies.schema_base import Limits

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # metric labels, ledger columns, URLs
MAX_METADATA_BYTES = 4096
MAX_ROUTES = 256
MAX_GRACE_S = 7 * 86_400
Role = Literal["user", "viewer", "admin"]
KeyState = Literal["active", "expired", "revoked"]


@dataclass(frozen=True, slots=True)
class StoredTeam:
    name: str
    limits: Limits
    budget: Budget
    metadata: dict[str, Any]
    created_at: float
    updated_at: float

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limits": self.limits.model_dump(exclude_defaults=True),
            "budget": self.budget.model_dump(exclude_defaults=True),
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class StoredKey:
    name: str
    team: str | None
    user: str | None
    role: Role
    priority: Priority
    routes: tuple[str, ...] | None  # None: every route
    limits: Limits
    budget: Budget
    metadata: dict[str, Any]
    secret_sha256: str
    hint: str  # the prefix and the last four characters: all that is ever shown again
    created_at: float
    updated_at: float
    expires_at: float | None = None
    rotated_at: float | None = None
    revoked_at: float | None = None
    previous_sha256: str | None = None  # the secret before the last rotation …
    previous_until: float | None = None  # … which works until then
    extra: dict[str, Any] = field(default_factory=dict)

    def state(self, now: float) -> KeyState:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def public(self, now: float) -> dict[str, Any]:
        """The key as the API and the console show it: never a secret nor its hash."""
        return {
            "name": self.name,
            "team": self.team,
            "user": self.user,
            "role": self.role,
            "priority": self.priority,
            "routes": list(self.routes) if self.routes is not None else None,
            "limits": self.limits.model_dump(exclude_defaults=True),
            "budget": self.budget.model_dump(exclude_defaults=True),
            "metadata": self.metadata,
            "hint": self.hint,
            "state": self.state(now),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "rotated_at": self.rotated_at,
            "revoked_at": self.revoked_at,
            "previous_secret_until": (
                self.previous_until
                if self.previous_until is not None and self.previous_until > now
                else None
            ),
        }


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _bounded_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is over {MAX_METADATA_BYTES} bytes as JSON")
    for name, item in value.items():
        if len(name) > 64:
            raise ValueError("metadata names are at most 64 characters")
        if isinstance(item, dict | list):
            raise ValueError("metadata values are strings, numbers, booleans or null")
    return value


class TeamCreate(_Input):
    name: str = Field(pattern=NAME_PATTERN)
    limits: Limits = Limits()
    budget: Budget = Budget()
    metadata: dict[str, Any] = Field(default_factory=dict)

    _metadata = field_validator("metadata")(_bounded_metadata)


class TeamUpdate(_Input):
    limits: Limits | None = None
    budget: Budget | None = None
    metadata: dict[str, Any] | None = None

    _metadata = field_validator("metadata")(_bounded_metadata)


class _KeyFields(_Input):
    team: str | None = Field(None, pattern=NAME_PATTERN)
    user: str | None = Field(None, min_length=1, max_length=128)
    routes: list[str] | None = Field(None, max_length=MAX_ROUTES)
    limits: Limits = Limits()
    budget: Budget = Budget()
    metadata: dict[str, Any] = Field(default_factory=dict)
    expires_at: float | None = Field(None, gt=0)

    _metadata = field_validator("metadata")(_bounded_metadata)

    @field_validator("routes")
    @classmethod
    def _route_names(cls, routes: list[str] | None) -> list[str] | None:
        if routes is not None and any(not r or len(r) > 128 for r in routes):
            raise ValueError("route names are 1 to 128 characters")
        return routes


class KeyCreate(_KeyFields):
    name: str = Field(pattern=NAME_PATTERN)
    role: Role = "user"
    """Set once: a key's role never changes (make a new key instead)."""
    priority: Priority = "standard"
    expires_in_s: float | None = Field(None, gt=0, le=10 * 365 * 86_400)

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_at is not None and self.expires_in_s is not None:
            raise ValueError("give expires_at or expires_in_s, not both")
        return self


class KeyUpdate(_Input):
    """Only the fields given change; `routes: null` opens every route, `expires_at: null`
    removes the expiry."""

    team: str | None = Field(None, pattern=NAME_PATTERN)
    user: str | None = Field(None, min_length=1, max_length=128)
    routes: list[str] | None = Field(None, max_length=MAX_ROUTES)
    limits: Limits | None = None
    budget: Budget | None = None
    metadata: dict[str, Any] | None = None
    priority: Priority | None = None
    expires_at: float | None = Field(None, gt=0)

    _metadata = field_validator("metadata")(_bounded_metadata)
    _routes = field_validator("routes")(_KeyFields._route_names.__func__)  # type: ignore[attr-defined]


class Rotate(_Input):
    grace_s: float = Field(3600.0, ge=0, le=MAX_GRACE_S)
    """How long the old secret keeps working."""
