"""Console sessions: a cookie is valid only as issued, only until it expires, and never after
sign-out; it names no key; CSRF tokens belong to one session; failed sign-ins are throttled."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

import orjson

from gateway.http.console.revocations import Revocations
from gateway.http.console.session import Sessions, SignInThrottle, fingerprint

DIGEST = hashlib.sha256(b"sk-admin").hexdigest()


def test_a_cookie_reads_back_as_issued_and_names_no_key() -> None:
    sessions = Sessions(b"secret", ttl_s=60, revoked=Revocations(not_before=0))
    cookie = sessions.issue(DIGEST, "admin", "admin", now=1000)
    session = sessions.read(cookie, now=1030)
    assert session is not None
    assert (session.key_name, session.role, session.expires) == ("admin", "admin", 1060)
    assert session.key_fingerprint == fingerprint(DIGEST) != DIGEST
    assert DIGEST not in cookie and DIGEST[:16] not in cookie and "sk-admin" not in cookie


def test_an_expired_tampered_or_foreign_cookie_is_no_session() -> None:
    sessions = Sessions(b"secret", ttl_s=60, revoked=Revocations(not_before=0))
    cookie = sessions.issue(DIGEST, "viewer", "viewer", now=1000)
    assert sessions.read(cookie, now=1060) is None
    body, signature = cookie.split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["r"] = "admin"
    forged = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    assert sessions.read(f"{forged}.{signature}", now=1001) is None
    assert (
        Sessions(b"another", ttl_s=60, revoked=Revocations(not_before=0)).read(cookie, now=1001)
        is None
    )
    for junk in ("", "x", "a.b.c", "!!.??", "a" * 5000, None):
        assert sessions.read(junk, now=1001) is None


def test_signing_out_ends_the_session_even_with_its_cookie_kept() -> None:
    sessions = Sessions(b"secret", ttl_s=3600)
    cookie = sessions.issue(DIGEST, "admin", "admin")
    session = sessions.read(cookie)
    assert session is not None
    asyncio.run(sessions.revoke(session))
    assert sessions.read(cookie) is None


def test_in_memory_a_session_from_before_this_process_is_refused() -> None:
    """Its sign-out, if any, died with the process before: a restart must not revive it."""
    earlier = Sessions(b"secret", ttl_s=3600, revoked=Revocations(not_before=0))
    cookie = earlier.issue(DIGEST, "admin", "admin", now=time.time() - 60)
    assert earlier.read(cookie) is not None
    assert Sessions(b"secret", ttl_s=3600).read(cookie) is None  # a process started since


def test_a_csrf_token_belongs_to_its_session() -> None:
    sessions = Sessions(b"secret", ttl_s=3600)
    one = sessions.read(sessions.issue(DIGEST, "admin", "admin"))
    two = sessions.read(sessions.issue(DIGEST, "admin", "admin"))
    assert one is not None and two is not None
    assert sessions.csrf_ok(one, sessions.csrf(one))
    assert not sessions.csrf_ok(one, sessions.csrf(two))
    assert not sessions.csrf_ok(one, None) and not sessions.csrf_ok(one, "")


def test_failed_sign_ins_are_throttled_per_address_and_forgotten_in_time() -> None:
    throttle = SignInThrottle(attempts=3, window_s=60)
    for t in (0, 1, 2):
        assert throttle.retry_after("10.0.0.1", now=t) == 0
        throttle.failed("10.0.0.1", now=t)
    assert throttle.retry_after("10.0.0.1", now=3) == 57
    assert throttle.retry_after("10.0.0.2", now=3) == 0
    assert throttle.retry_after("10.0.0.1", now=61) == 0


def test_the_throttle_tracks_a_bounded_number_of_addresses() -> None:
    throttle = SignInThrottle(attempts=1, window_s=60, tracked=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", now=0)
    assert len(throttle._failures) == 100
