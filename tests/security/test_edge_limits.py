"""Resource limits at the edge: nothing is read or parsed before authentication, every body
and head is bounded, a head that never ends is cut, and no client string becomes a metric
label or a log line of its own."""

from __future__ import annotations

import contextlib
import re
import socket
import time

import httpx
import pytest

from tests.support.hostile import TEAM_A, Hostile

pytestmark = pytest.mark.e2e


def _raw(hostile: Hostile, data: bytes, wait_s: float = 10.0) -> bytes:
    """Send bytes as they are; what the server answered before it closed (or `wait_s`)."""
    port = int(hostile.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_an_unauthenticated_admin_body_is_never_read(hostile: Hostile) -> None:
    big = b"x" * (40 * 1024 * 1024)
    started = time.monotonic()
    reply = httpx.post(hostile.url + "/admin/faults", content=big, timeout=30)
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"
    assert time.monotonic() - started < 5
    hostile.healthy()


def test_admin_bodies_are_bounded_even_for_admins(hostile: Hostile) -> None:
    reply = hostile.admin("POST", "/admin/faults", content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "request_too_large"


def test_a_huge_header_is_answered_431_without_stalling_anyone(hostile: Hostile) -> None:
    head = (
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (16 * 1024 * 1024) + b"\r\n\r\n"
    )
    started = time.monotonic()
    answer = _raw(hostile, head)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert time.monotonic() - started < 5
    hostile.healthy()


def test_too_many_headers_are_answered_431(hostile: Hostile) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(300))
    answer = _raw(hostile, b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    hostile.healthy()


def test_a_head_that_never_ends_is_cut(hostile: Hostile) -> None:
    started = time.monotonic()
    answer = _raw(hostile, b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: a", wait_s=30)
    assert answer == b""
    assert 9 < time.monotonic() - started < 20  # HEAD_TIMEOUT_S is 10
    hostile.healthy()


def test_client_model_names_never_become_metric_labels(hostile: Hostile) -> None:
    before = len(httpx.get(hostile.url + "/metrics").text)
    for i in range(3):
        name = f"m{i}-" + "x" * 60_000 + "\n\x01evil"
        reply = hostile.post(
            "/v1/chat/completions",
            {"model": name, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.status_code in (404, 413)
    metrics = httpx.get(hostile.url + "/metrics").text
    assert len(metrics) - before < 20_000
    assert "xxxxxxxxxx" not in metrics and "\x01" not in metrics


def test_a_newline_in_a_model_name_forges_no_log_line(hostile: Hostile) -> None:
    forged = "spillover.access request_id=forged"
    hostile.post(
        "/v1/chat/completions",
        {"model": f"nope\n{forged}", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": "ok\x1b[2Jforged", "x-spillover-drill": "d\x1b[2J"},
    )
    time.sleep(0.2)
    lines = hostile.proc.output().splitlines()
    assert not [line for line in lines if line.startswith(forged) or line.startswith("forged")]
    access = [line for line in lines if "spillover.access" in line or "route=" in line]
    assert access, "the access log is on: a line per request is expected"
    assert not any(re.search(r"route=nope", line) for line in access)
    assert "\x1b" not in hostile.proc.output()  # no terminal escapes from a client


def test_body_limit_is_413_in_openai_format(hostile: Hostile) -> None:
    body = {"model": "openai", "messages": [{"role": "user", "content": "x" * 70_000}]}
    reply = httpx.post(
        hostile.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {TEAM_A}"},
    )
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "request_too_large"
