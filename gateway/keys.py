"""API key → principal (who is calling). Keys are held only as SHA-256 digests, so a config
may carry the digest instead of the secret, and no secret sits in memory longer than
loading takes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import AuthenticationFailed, ModelNotFound
from policies.pool import Priority
from policies.route import Route
from policies.schema import GatewayConfig


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from the API key, travels with the request."""

    key_name: str
    team: str | None
    routes: frozenset[str] | None
    admin: bool
    priority: Priority = "standard"
    viewer: bool = False  # may read the console

    @property
    def console_role(self) -> str | None:
        """`admin` (read and act), `viewer` (read), or None (no console)."""
        return "admin" if self.admin else "viewer" if self.viewer else None

    def may_use(self, route: str) -> bool:
        return self.routes is None or route in self.routes

    @property
    def tenant(self) -> str:
        """Whose data this is: the key's team, else the key — typed, so that a key named
        like a team never reads that team's stored responses or shares its cache key."""
        return f"team:{self.team}" if self.team else f"key:{self.key_name}"


def digest(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


class StoredKeys(Protocol):
    """Keys kept as data (`gateway.keyring`): looked at after the config file's."""

    prefix: bytes  # every stored key's secret starts so

    def lookup(self, digest: str) -> Principal | None: ...

    def holders(self) -> Iterable[tuple[str, Principal]]:
        """Every stored secret's digest and principal, whether or not it has expired."""

    @property
    def version(self) -> int:
        """Raised by every change: what was read of `holders` is stale once it moves."""

    def well_formed(self, token: bytes) -> bool:
        """Whether a secret with the prefix has a matching checksum (else it was mistyped)."""


class KeyStore:
    def __init__(
        self,
        config: GatewayConfig,
        minted: Mapping[str, Principal] | None = None,
        stored: StoredKeys | None = None,
    ) -> None:
        # Keys minted at run time (a console drill's), by digest; looked at only on a miss.
        self._minted: Mapping[str, Principal] = minted if minted is not None else {}
        self._stored = stored
        self._by_digest: dict[str, Principal] = {}
        for key in config.keys:
            key_digest = (
                key.key_sha256.lower()
                if key.key_sha256
                else digest(key.key.get_secret_value().encode())  # type: ignore[union-attr]
            )
            self._by_digest[key_digest] = Principal(
                key_name=key.name,
                team=key.team,
                routes=frozenset(key.routes) if key.routes is not None else None,
                admin=key.admin,
                viewer=key.viewer,
                priority=key.priority,
            )

    def authenticate(self, authorization: bytes | None) -> Principal:
        if not authorization:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise AuthenticationFailed("the Authorization header must be 'Bearer <key>'")
        token = token.strip()
        found = digest(token)
        principal = self._by_digest.get(found)
        if principal is not None:
            return principal
        stored = self._stored
        if stored is not None and token.startswith(stored.prefix):
            principal = stored.lookup(found)
            if principal is not None:
                return principal
            if not stored.well_formed(token):
                raise AuthenticationFailed(
                    "invalid API key: its checksum does not match (mistyped or cut short?)"
                )
        principal = self._minted.get(found)
        if principal is None:
            raise AuthenticationFailed("invalid API key")
        return principal

    def holders(self) -> Iterable[tuple[str, Principal]]:
        """The configured and stored keys' digests and principals (minted keys are not among
        them); `still_valid` tells whether a stored one still authenticates."""
        yield from self._by_digest.items()
        if self._stored is not None:
            yield from self._stored.holders()

    @property
    def version(self) -> int:
        """Moves whenever stored keys change (-1 without any)."""
        return self._stored.version if self._stored is not None else -1

    def still_valid(self, key_digest: str) -> bool:
        """Whether a digest from `holders` authenticates now (a stored key may have expired
        or been rotated out since)."""
        if key_digest in self._by_digest:
            return True
        return self._stored is not None and self._stored.lookup(key_digest) is not None


def route_for(config: GatewayConfig, principal: Principal, name: str) -> tuple[str, Route]:
    """The route that model name `name` reaches (its own name, an alias or a pattern) and
    that route's name, when this key may use it; else the same 404 for both, so a key cannot
    learn which routes exist."""
    route_name = config.route_names.resolve(name)
    if route_name is None or not principal.may_use(route_name):
        raise ModelNotFound(
            f"The model '{name[:256]}' does not exist or you do not have access to it.",
            param="model",
        )
    return route_name, config.routes[route_name]
