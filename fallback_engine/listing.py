"""The file of replica URLs behind `discover: {file: ...}`: written by `spillover pool launch`
(a replica is listed once it is up and warm, unlisted before it stops), read by every gateway
process on its discovery interval — so the workers and the heavy lane all see one set, like
Prometheus' file-based service discovery. The writer replaces the file in one rename, so a
reader sees the old list or the new one, never half of one. Bounded: a file past 64 KiB or
with more than 256 URLs is refused, and so is a URL that is not http(s)://host:port."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

MAX_BYTES = 64 * 1024
MAX_REPLICAS = 256


class ListingError(ValueError):
    """The file cannot be used as it is: the last set read stays."""


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise ListingError(f"{url!r} is not http(s)://host:port")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise ListingError(f"{url!r}: a replica URL is only scheme, host and port")
    return url.rstrip("/")


def read_listing(path: str | Path) -> list[str]:
    """The URLs listed; none when the file does not exist (nothing launched yet)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ListingError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ListingError(f"{path} is over {MAX_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ListingError(f"{path} is not JSON") from None
    urls = doc.get("replicas") if isinstance(doc, dict) else None
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ListingError(f'{path}: expected {{"replicas": [URL, ...]}}')
    if len(urls) > MAX_REPLICAS:
        raise ListingError(f"{path} lists more than {MAX_REPLICAS} replicas")
    return sorted({check_url(u) for u in urls})


def write_listing(path: str | Path, urls: list[str]) -> None:
    """Replace the file with these URLs, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"replicas": sorted({check_url(u) for u in urls})}, indent=1)
    fd, tmp = tempfile.mkstemp(prefix=".listing-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
