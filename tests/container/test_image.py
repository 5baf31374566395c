"""The image as a new user meets it (`make test-container`; CI runs it where podman is or can
be installed): built from the Dockerfile on a Debian bookworm + Python 3.11 base, run with no
arguments and a published port, it serves the demo to the host — ready, a chat completion
through the official SDK, a ledger row in its volume, healthy by its own HEALTHCHECK command,
running as uid 10001 on a read-only root — and stops within the grace period. Its size is
bounded."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from tests.support.processes import ROOT, free_port

pytestmark = pytest.mark.container

IMAGE = "localhost/spillover:test"
BASE = os.environ.get("SPILLOVER_IMAGE_BASE", "localhost/spillover-base:bookworm-py311")
MAX_IMAGE_BYTES = 300 * 1000 * 1000


def podman(*args: str, check: bool = True, timeout: float = 600) -> str:
    # runc with cgroupfs and explicit limits: what works on hosts with hybrid cgroups and a
    # capped rlimit (like CI's VM) as well as on ordinary ones.
    runtime = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"] if shutil.which("runc") else []
    run = subprocess.run(
        ["podman", *runtime, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {run.stderr[-2000:]}")
    return run.stdout.strip()


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (make test-container installs it where it can)")
    if subprocess.run(["podman", "image", "exists", BASE]).returncode != 0:
        subprocess.run([str(ROOT / "deploy" / "container" / "base-image.sh"), BASE], check=True)
    build = ["build", "--isolation", "chroot", "--target", "runtime", "-t", IMAGE]
    build += ["--build-arg", f"BASE={BASE}"]
    if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):  # the machine's CAs, for pip
        build += ["-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"]
    podman(*build, str(ROOT), timeout=1800)
    return IMAGE


@pytest.fixture
def demo(image: str) -> Iterator[tuple[str, str]]:
    port = free_port()
    name = f"spillover-demo-{port}"
    limits = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
    # A read-only root, as the Kubernetes manifests run it: only the volume is written.
    podman("run", "-d", "--read-only", "--name", name, *limits, "-p", f"{port}:4000", image)
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        podman("rm", "-f", name, check=False)


def test_the_image_is_small(image: str) -> None:
    size = int(podman("image", "inspect", image, "--format", "{{.Size}}"))
    assert size <= MAX_IMAGE_BYTES, f"{size / 1e6:.0f} MB"


def test_docker_run_serves_the_demo_to_the_host(demo: tuple[str, str]) -> None:
    name, url = demo
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, podman("logs", name, check=False)[-3000:]
        time.sleep(0.5)
    client = OpenAI(base_url=f"{url}/v1", api_key="sk-spillover-demo")
    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi from the host"}]
    )
    assert reply.parse().choices[0].message.content
    assert reply.headers["x-spillover-provider"] == "primary"
    # The console's templates and vendored files are in the image: sign in, see a page.
    with httpx.Client(base_url=url, timeout=10) as console:
        signed_in = console.post("/ui/login", data={"key": "sk-spillover-admin"})
        assert signed_in.status_code == 303
        assert "primary/gpt-4o" in console.get("/ui/targets").text
        assert console.get("/ui/static/vendor/uPlot-1.6.32.iife.min.js").status_code == 200
    count = (
        "import sqlite3, time; time.sleep(1); print(sqlite3.connect("
        "'/var/lib/spillover/spillover-ledger.sqlite').execute("
        "'select count(*) from spillover_ledger where status = 200').fetchone()[0])"
    )
    assert int(podman("exec", name, "python3", "-c", count)) >= 1
    assert podman("exec", name, "id", "-u") == "10001"
    podman("exec", name, "spillover", "health", "--ready")  # the HEALTHCHECK's command
    started = time.monotonic()
    podman("stop", "-t", "30", name)
    assert time.monotonic() - started < 30
    assert podman("inspect", name, "--format", "{{.State.ExitCode}}") == "0"
