"""The console's core: who is asking (session, role), bounded forms with their CSRF and
Origin checks, and rendering (Jinja2, autoescaped, with the console's filters)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.errors import AuthenticationFailed
from gateway.http.console.drills import ConsoleDrills
from gateway.http.console.port import ConsolePort
from gateway.http.console.session import COOKIE, Session, Sessions, SignInThrottle, fingerprint
from gateway.keys import KeyStore, Principal, digest

log = logging.getLogger("spillover.console")

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 16 * 1024
PAGES = (
    ("overview", "Overview"),
    ("targets", "Routes and targets"),
    ("pool", "Pool"),
    ("spend", "Spend"),
    ("limits", "Limits and budgets"),
    ("drills", "Drills"),
    ("keys", "Keys"),
    ("config", "Config"),
)


class Denied(Exception):
    """Not signed in (→ the sign-in page) or not allowed (→ 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Console:
    def __init__(self, port: ConsolePort, sessions: Sessions, drills: ConsoleDrills) -> None:
        self.port = port
        self.sessions = sessions
        self.drills = drills
        self.throttle = SignInThrottle()
        # The fingerprints of the serving generation's keys (rebuilt when a reload swaps it).
        # The key store and keyring version read, and each key's fingerprint → its digest
        # and principal.
        self._holders: tuple[KeyStore | None, int, dict[str, tuple[str, Principal]]] = (
            None, -1, {},
        )  # fmt: skip
        self._cache: dict[str, tuple[float, Any]] = {}
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(num=_num, pct=_pct, usd=_usd, ago=_ago, dur=_dur, at=_at)

    # -- who is asking -------------------------------------------------------------------------

    def _principal(self, session: Session) -> Principal | None:
        """The session's key as it is now: a reload may have removed or demoted it, and a
        stored key may have been revoked, rotated out or expired since it signed in."""
        keys: KeyStore = self.port.keys()
        if self._holders[0] is not keys or self._holders[1] != keys.version:
            holders = {fingerprint(d): (d, p) for d, p in keys.holders()}
            self._holders = (keys, keys.version, holders)
        found = self._holders[2].get(session.key_fingerprint)
        if found is None or not keys.still_valid(found[0]):
            return None
        return found[1]

    def who(self, request: Request, act: bool = False) -> tuple[Session, Principal]:
        session = self.sessions.read(request.cookies.get(COOKIE))
        principal = self._principal(session) if session else None
        if session is None or principal is None or principal.console_role is None:
            raise Denied(401, "sign in")
        if act and not principal.admin:
            raise Denied(403, "this key may look, not act: sign in with an admin key")
        return session, principal

    async def form(self, request: Request, session: Session | None) -> dict[str, str]:
        """A bounded urlencoded body; CSRF and Origin checked when a session is given."""
        _same_origin(request)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Denied(413, "form too large")
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if session is not None:
            token = request.headers.get("x-csrf-token") or fields.get("csrf")
            if not self.sessions.csrf_ok(session, token):
                raise Denied(403, "the form is stale or not ours: reload the page and retry")
        return fields

    async def cached(
        self, name: str, ttl_s: float, load: Callable[[ConsolePort], Awaitable[Any]]
    ) -> Any:
        """`load(port)`, at most once per `ttl_s` (ledger queries behind live fragments)."""
        at, value = self._cache.get(name, (0.0, None))
        if time.monotonic() - at > ttl_s:
            value = await load(self.port)
            self._cache[name] = (time.monotonic(), value)
        return value

    # -- rendering -----------------------------------------------------------------------------

    def render(
        self, name: str, request: Request, who: tuple[Session, Principal] | None, **data: Any
    ) -> HTMLResponse:
        session, principal = who if who else (None, None)
        html = self.templates.get_template(name).render(
            pages=PAGES,
            page=data.pop("page", ""),
            signed_in=principal.key_name if principal else None,
            may_act=bool(principal and principal.admin),
            csrf=self.sessions.csrf(session) if session else "",
            refresh_s=min(5.0, max(1.0, self.port.config().console.sample_s)),
            **data,
        )
        return HTMLResponse(html)


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Denied(403, "cross-origin form refused")


def message(text: str) -> str:
    import html

    return (
        "<!doctype html><meta charset=utf-8><title>Spillover</title>"
        f'<p class="problem">{html.escape(text)}</p><p><a href="/ui/overview">Back</a></p>'
    )


def authenticate(console: Console, key: str) -> tuple[str, Principal]:
    """The sign-in key's digest and principal; AuthenticationFailed when it is not one."""
    token = key.strip().encode()
    if not token or len(token) > 512:
        raise AuthenticationFailed("invalid API key")
    principal = console.port.authenticate(b"Bearer " + token)
    return digest(token), principal


# -- template filters ------------------------------------------------------------------------

NONE = "\u2013"  # an en dash: no value


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return NONE
    return f"{value:,.{digits}f}"


def _pct(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value * 100:.{digits}f}%"


def _usd(value: float | None) -> str:
    if value is None:
        return NONE
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _at(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _ago(at: float) -> str:
    return _dur(time.time() - at) + " ago"


def _dur(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
