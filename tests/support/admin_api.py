"""Calls the keyring tests share: the admin API with a key, and one small chat request."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.processes import ADMIN_KEY, Proc


def admin(proc: Proc, method: str, path: str, key: str = ADMIN_KEY, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, proc.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10, **kw
    )


def chat(proc: Proc, secret: str, model: str = "chat") -> httpx.Response:
    return httpx.post(
        proc.url + "/v1/chat/completions",
        json={"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
