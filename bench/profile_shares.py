"""Where a profiled worker's time went: py-spy's raw stacks (`FORMAT=raw EXT=txt bash
bench/profile.sh 16`) summed by the innermost frame's place, and the inclusive share of the
frames worth watching.
    .venv/bin/python bench/profile_shares.py bench/results/<date>-<commit>-profile-c16.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# The first pattern that matches a frame's file names its place.
PLACES: list[tuple[str, str]] = [
    ("the ledger (journal, writer, SQLite)", r"accounting/(ledger|journal|store)|aiosqlite|sqlite"),
    ("the upstream client (ours)", r"gateway/upstream/"),
    ("aiohttp's client", r"aiohttp/|yarl/|multidict/|aiohappyeyeballs/"),
    ("uvicorn (HTTP protocol, ASGI cycle)", r"uvicorn/|httptools/"),
    ("metrics (prometheus-client)", r"prometheus_client/|gateway/metrics"),
    ("our request path", r"gateway/|policies/|fallback_engine/"),
    ("asyncio and the loop", r"asyncio/|uvloop/"),
    ("logging", r"logging/"),
]
# Inclusive: the share of samples with this frame anywhere on the stack.
WATCHED: list[tuple[str, str]] = [
    ("Accountant.record (metrics, cost, row, journal append)", r"Accountant\.record "),
    ("Journal.append", r"Journal\.append "),
    ("LedgerWriter._run (read back, insert)", r"LedgerWriter\._run "),
    ("aiosqlite's thread", r"Connection\.run \(aiosqlite|_connection_worker_thread"),
    ("AttemptRunner.run (the upstream call)", r"AttemptRunner\.run "),
    ("Preparer.__call__ (auth, body, admit, shape, decide)", r"Preparer\.__call__ "),
    ("UpstreamClient.request (the upstream exchange)", r"UpstreamClient\.request "),
    ("Answerer.whole (the answer, its row, its headers)", r"Answerer\.whole "),
    ("uvicorn's request cycle send (writes to the client)", r"RequestResponseCycle\.send "),
    ("uvicorn's parser (data_received)", r"HttpToolsProtocol\.data_received "),
]
_FRAME = re.compile(r"^(.*) \((.*?):\d+\)$")


def shares(path: Path) -> tuple[Counter[str], Counter[str], int]:
    places: Counter[str] = Counter()
    watched: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        match = _FRAME.match(frames[-1])
        where = match.group(2) if match else frames[-1]
        places[_place(where)] += count
        for name, pattern in WATCHED:
            if re.search(pattern, stack):
                watched[name] += count
    return places, watched, total


def _place(where: str) -> str:
    for name, pattern in PLACES:
        if re.search(pattern, where):
            return name
    return "the rest (C code, threads, unattributed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw", type=Path, help="py-spy raw (collapsed) stacks")
    args = parser.parse_args()
    places, watched, total = shares(args.raw)
    print(f"{total} samples in {args.raw.name}\n")
    print(f"{'innermost frame in':56} share")
    for name, count in places.most_common():
        print(f"{name:56} {100 * count / total:5.1f}%")
    print(f"\n{'inclusive':56} share")
    for name, _ in WATCHED:
        print(f"{name:56} {100 * watched[name] / total:5.1f}%")


if __name__ == "__main__":
    main()
