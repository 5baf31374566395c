"""Console sessions: a signed cookie (HMAC-SHA256) naming the key's fingerprint, its role and
an expiry — no key, no digest. A session is checked against the running config on every
request, so a key removed or demoted by a reload signs its holder out. CSRF tokens are HMACs
of the session id; sign-in failures are throttled per client address."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from gateway.http.console.revocations import Revocations

COOKIE = "spillover_session"
SECRET_ENV = "SPILLOVER_CONSOLE_SECRET"  # `serve` → its workers: one secret for all of them


def fingerprint(key_digest: str) -> str:
    """What a session names its key by: not the digest, so a cookie gives no brute-force target."""
    return hashlib.sha256(b"spillover-console:" + key_digest.encode()).hexdigest()[:32]


def process_secret() -> bytes:
    """The secret of this process when the config sets none: the parent's when `serve` started
    workers, else a new random one (kept in the environment for workers started later)."""
    value = os.environ.get(SECRET_ENV)
    if not value:
        value = secrets.token_hex(32)
        os.environ[SECRET_ENV] = value
    return value.encode()


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    key_fingerprint: str
    key_name: str
    role: str  # "admin" or "viewer"
    expires: float

    @property
    def may_act(self) -> bool:
        return self.role == "admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    MAX_COOKIE = 1024

    def __init__(self, secret: bytes, ttl_s: float, revoked: Revocations | None = None) -> None:
        self._key = hashlib.sha256(b"spillover-console-session:" + secret).digest()
        self.ttl_s = ttl_s
        self.revoked = revoked or Revocations()  # signed out before expiry

    def _sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def issue(self, key_digest: str, key_name: str, role: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        payload = orjson.dumps(
            {
                "s": secrets.token_hex(16),
                "f": fingerprint(key_digest),
                "n": key_name,
                "r": role,
                "e": int(now + self.ttl_s),
            }
        )
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        if not cookie or len(cookie) > self.MAX_COOKIE or cookie.count(".") != 1:
            return None
        now = time.time() if now is None else now
        body, signature = cookie.split(".")
        try:
            payload, given = _unb64(body), _unb64(signature)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self._sign(payload)):
            return None
        try:
            data = orjson.loads(payload)
            session = Session(
                str(data["s"]), str(data["f"]), str(data["n"]), str(data["r"]), float(data["e"])
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if session.expires <= now or session.id in self.revoked:
            return None
        if session.expires - self.ttl_s < self.revoked.not_before - 1:  # expiry: whole seconds
            return None  # issued before this process could know of its sign-out
        if session.role not in ("admin", "viewer"):
            return None
        return session

    async def revoke(self, session: Session) -> None:
        await self.revoked.add(session.id, session.expires)

    def csrf(self, session: Session) -> str:
        return _b64(self._sign(b"csrf:" + session.id.encode()))

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token or "", self.csrf(session))


class SignInThrottle:
    """At most `attempts` failed sign-ins per client address in `window_s` (then 429)."""

    def __init__(self, attempts: int = 10, window_s: float = 300.0, tracked: int = 10_000):
        self._attempts = attempts
        self._window_s = window_s
        self._tracked = tracked
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self._failures.get(client, []) if t > now - self._window_s]
        if len(recent) < self._attempts:
            return 0.0
        return recent[0] + self._window_s - now

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        recent = [t for t in self._failures.pop(client, []) if t > now - self._window_s]
        self._failures[client] = [*recent, now][-self._attempts :]
        while len(self._failures) > self._tracked:
            self._failures.popitem(last=False)
