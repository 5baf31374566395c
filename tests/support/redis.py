"""Redis for the tests: the machine's own (CI fails, never skips, when it is missing) and
throwaway `redis-server` processes a test can stop and start again."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.support.processes import free_port


class RedisServer:
    """A throwaway redis-server this test may stop and start again on the same port."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: the shared-state tests need it")
        self.binary, self.port, self.tmp = binary, free_port(), tmp
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail("throwaway redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def real_redis_url() -> str:
    """The machine's Redis (or REDIS_URL). CI fails, never skips, when it is missing."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.fail(f"no Redis at {url} ({exc}); start one or set REDIS_URL")
    return url
