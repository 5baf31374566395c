"""API key → principal (who is calling). Keys are held only as SHA-256 digests, so a config
may carry the digest instead of the secret, and no secret sits in memory longer than
loading takes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


class KeyStore:
    def __init__(
        self, config: GatewayConfig, minted: Mapping[str, Principal] | None = None
    ) -> None:
        # Keys minted at run time (a console drill's), by digest; looked at only on a miss.
        self._minted: Mapping[str, Principal] = minted if minted is not None else {}
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
        found = digest(token.strip())
        principal = self._by_digest.get(found)
        if principal is None:
            principal = self._minted.get(found)
            if principal is None:
                raise AuthenticationFailed("invalid API key")
        return principal

    def holders(self) -> Iterable[tuple[str, Principal]]:
        """The configured keys' digests and principals (minted keys are not among them)."""
        return self._by_digest.items()


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
