"""Decision latency of the `auto` (lookahead) strategy: cached through Redis, cached in process, uncached.

    python bench/decision_latency.py --router deploy/local/artifacts/sim-router [--queries 200] [--data FILE]

Starts a real `redis-server` on a free loopback port, builds the strategy as the gateway does and times
`decide()` on one query at a time: (1) uncached (a new question each time: router inference included),
(2) cached in Redis, (3) cached in the in-process LRU, next to the router's own inference time.
Targets: cached through Redis p50 ≤ 1 ms; uncached ≤ router inference + 2 ms (p50s through Redis, the
gateway's shared cache). Each path is first warmed up on other questions (`--warmup`), and the output
ends with a met/missed line per target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import free_port  # noqa: E402
from router_models.cli.arguments import at_least  # noqa: E402
from service.backends.pool import ReplicaPool  # noqa: E402
from service.cache import MemoryCache, RedisCache  # noqa: E402
from service.config import parse_settings  # noqa: E402
from service.gateway import DEFAULT_LOADERS, _import_loader  # noqa: E402
from service.inference import inference_thread, on_thread  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.strategies.base import StrategyDeps  # noqa: E402
from service.strategies.lookahead import LookaheadStrategy  # noqa: E402
from service.types import GatewayRequest  # noqa: E402


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000
    return f"p50 {p50_ms(ordered):7.3f} ms  p99 {p99:7.3f} ms"


def verdicts(inference: list[float], uncached: list[float], cached: list[float]) -> list[str]:
    """One met/missed line per target of the docstring (p50s, through Redis)."""
    budget = p50_ms(inference) + 2.0
    return [
        f"target cached through Redis p50 <= 1 ms: {'met' if p50_ms(cached) <= 1.0 else 'missed'} "
        f"({p50_ms(cached):.3f} ms)",
        f"target uncached p50 <= router inference + 2 ms ({budget:.3f} ms): "
        f"{'met' if p50_ms(uncached) <= budget else 'missed'} ({p50_ms(uncached):.3f} ms)",
    ]


def questions(path: str | None, n: int) -> list[str]:
    if path:
        import gzip

        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as lines:  # type: ignore[operator]
            return [json.loads(line)["prompt"] for _, line in zip(range(n), lines, strict=False)]
    return [f"Question {i}: what is {i} times {i + 7}, and why?" for i in range(n)]


async def time_decisions(strategy: LookaheadStrategy, texts: list[str]) -> list[float]:
    samples = []
    for text in texts:
        request = GatewayRequest(endpoint="chat", public_model="auto", stream=False,
                                 body={"model": "auto", "messages": [{"role": "user", "content": text}]})
        started = time.perf_counter()
        await strategy.decide(request)
        samples.append(time.perf_counter() - started)
    return samples


async def run(args: argparse.Namespace, redis_url: str) -> None:
    # As the gateway does: the router is loaded, and runs, on the one inference thread (`service.inference`).
    thread = inference_thread()
    router = await on_thread(thread, lambda: _import_loader(DEFAULT_LOADERS["router"])(args.router))
    candidates = list(router.candidates)
    settings = parse_settings({
        "backends": [{"name": c, "model": c, "replicas": ["http://127.0.0.1:9"]} for c in candidates],
        "models": [{"name": "auto", "strategy": {"kind": "lookahead", "router": args.router,
                                                  "candidates": [{"backend": c} for c in candidates]}}],
    })
    texts = questions(args.data, args.queries)
    # Warm-up questions differ from the timed ones, so the timed "uncached" pass still misses the cache.
    warmup = [f"Warm-up {i}: name a colour that starts with {chr(65 + i % 26)}." for i in range(args.warmup)]
    print(f"router {router.kind} over {len(candidates)} candidates; {len(texts)} queries after "
          f"{len(warmup)} warm-up; load average {os.getloadavg()[0]:.1f}")
    def timed_scores(batch: list[str]) -> list[float]:
        seconds = []
        for text in batch:
            started = time.perf_counter()
            router.score([text])
            seconds.append(time.perf_counter() - started)
        return seconds

    await on_thread(thread, lambda: timed_scores(warmup))
    inference = await on_thread(thread, lambda: timed_scores(texts))
    print(f"router inference alone         {percentiles(inference)}")
    for label, cache in (("redis", RedisCache(Metrics(), redis_url, ttl_s=600, timeout_s=0.5)),
                         ("in-process LRU", MemoryCache(Metrics(), max_entries=100_000, ttl_s=600))):
        deps = StrategyDeps(metrics=Metrics(), pool=ReplicaPool(settings.backends, settings.dispatch),
                            cache=cache, loaders={"router": lambda path: router}, inference=thread)
        strategy = LookaheadStrategy("auto", settings.models[0].strategy, deps)  # type: ignore[arg-type]
        await strategy.start()
        await time_decisions(strategy, warmup)  # misses, then hits: connections, code paths and caches warm
        await time_decisions(strategy, warmup)
        uncached = await time_decisions(strategy, texts)
        hits = await time_decisions(strategy, texts)
        print(f"decide, uncached ({label:>14}) {percentiles(uncached)}")
        print(f"decide, cached   ({label:>14}) {percentiles(hits)}")
        await strategy.close()
        await cache.close()
        if label == "redis":
            through_redis = (uncached, hits)
    print("\n".join(verdicts(inference, *through_redis)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--router", required=True, metavar="DIR", help="router artifact")
    parser.add_argument("--data", metavar="FILE", help="routing data whose prompts are the queries")
    parser.add_argument("--queries", type=at_least(2), default=200,
                        help="questions timed per path (default 200; generated ones unless --data)")
    parser.add_argument("--warmup", type=at_least(0), default=50,
                        help="untimed questions per path first, none of them timed later (default 50)")
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not installed (make services installs it)", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        redis = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                  "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            asyncio.run(run(args, f"redis://127.0.0.1:{port}/0"))
        finally:
            redis.kill()
            redis.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
