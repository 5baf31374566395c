"""Hot reload through the admin API, SIGHUP and a file change; a bad file never replaces a
good config, and requests in flight finish on the config they started with."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import (
    ADMIN_KEY,
    GATEWAY_KEY,
    MockUpstream,
    Proc,
    failover_config,
    start_gateway,
)

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(params=[0.2])
def reloadable(
    request: pytest.FixtureRequest,
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    logs_dir: Path,
) -> Iterator[tuple[Proc, Path, str]]:
    text = failover_config(openai_upstream.port, anthropic_upstream.port).replace(
        "keys:\n", f"server: {{reload_poll_s: {request.param}}}\nkeys:\n"
    )
    proc = start_gateway(text, logs_dir, name="reloadable")
    path = next(logs_dir.glob(f"reloadable-{proc.url.rsplit(':', 1)[1]}.yaml"))
    yield proc, path, text
    proc.stop()


def _models(proc: Proc) -> set[str]:
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    return {m.id for m in client.models.list()}


def _with_route(text: str, name: str) -> str:
    return text.replace(
        "routes:\n",
        f"routes:\n  {name}:\n    targets:\n      - {{provider: primary, model: gpt-4o-mini}}\n",
    )


def test_admin_reload_swaps_and_a_bad_file_keeps_the_old_config(
    reloadable: tuple[Proc, Path, str],
) -> None:
    proc, path, text = reloadable
    path.write_text(_with_route(text, "added-by-api"))
    reply = httpx.post(proc.url + "/admin/reload", headers=ADMIN)
    assert reply.status_code == 200 and reply.json()["status"] == "reloaded"
    assert "added-by-api" in _models(proc)

    bad = _with_route(text, "never").replace(
        "    targets:\n      - {provider: primary, model: gpt-4o-mini}",
        "    targets:\n      - {provider: primary, model: gpt-4o-mini}\n    stratgy: weighted",
    )
    path.write_text(bad)
    reply = httpx.post(proc.url + "/admin/reload", headers=ADMIN)
    assert reply.status_code == 400
    (error,) = reply.json()["errors"]
    line = bad.splitlines().index("    stratgy: weighted") + 1
    assert f"{path}:{line}:5: routes.never.stratgy: unknown key" in error
    # The previous config keeps serving.
    assert "added-by-api" in _models(proc) and "never" not in _models(proc)
    metrics = httpx.get(proc.url + "/metrics").text
    assert 'spillover_config_reloads_total{outcome="error",trigger="admin_api"} 1.0' in metrics
    assert "spillover_config_last_reload_ok 0.0" in metrics
    assert "rejected, still serving the previous config" in proc.output()
    assert httpx.post(proc.url + "/admin/reload").status_code == 401
    assert (
        httpx.post(
            proc.url + "/admin/reload", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}
        ).status_code
        == 403
    )


def test_file_change_reloads(reloadable: tuple[Proc, Path, str]) -> None:
    proc, path, text = reloadable
    path.write_text(_with_route(text, "added-by-file"))
    deadline = time.monotonic() + 5
    while "added-by-file" not in _models(proc):
        assert time.monotonic() < deadline, "the file change was not picked up"
        time.sleep(0.1)


@pytest.mark.parametrize("reloadable", [0], indirect=True)
def test_sighup_reloads(reloadable: tuple[Proc, Path, str]) -> None:
    proc, path, text = reloadable  # file polling is off: only the signal can reload
    path.write_text(_with_route(text, "added-by-sighup"))
    time.sleep(0.5)
    assert "added-by-sighup" not in _models(proc)
    proc.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "added-by-sighup" not in _models(proc):
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.1)
    assert proc.process.poll() is None


def test_in_flight_stream_finishes_on_its_config(
    reloadable: tuple[Proc, Path, str], openai_upstream: MockUpstream
) -> None:
    proc, path, text = reloadable
    openai_upstream.configure(tokens_per_s=20, output_tokens=20)  # a 1-second stream
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="chat", stream=True, messages=[{"role": "user", "content": "x"}]
    )
    pieces: list[str] = []

    def read() -> None:
        pieces.extend(c.choices[0].delta.content or "" for c in stream if c.choices)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    # The route the stream uses disappears from the config mid-stream.
    path.write_text(text.replace("  chat:\n", "  renamed:\n"))
    assert httpx.post(proc.url + "/admin/reload", headers=ADMIN).status_code == 200
    reader.join(10)
    assert "".join(pieces).split() == ["Hello"] + [f"tok{i}" for i in range(1, 20)]
    assert _models(proc) == {"renamed"}
