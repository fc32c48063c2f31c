"""Switcher inference latency for one query at a time (the gateway's case: loaded and run on the gateway's
inference thread, not the main one), on a fixed number of torch threads.

    python bench/switcher_latency.py --switcher DIR [--threads 2] [--n 200]

Prints p50/p90/p99 in milliseconds of `Switcher.predict([query])` over questions of varied length: wall time,
and the process CPU time per call (summed over threads), which stays meaningful on a machine shared with
other work (with 1 thread it approximates the wall time the call takes on an idle core).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router_models.cli.arguments import at_least  # noqa: E402
from router_models.thinkswitch.switcher import load_switcher  # noqa: E402
from service.inference import inference_thread  # noqa: E402

QUERIES = [
    "What is 17 times 23?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "A wooden bridge can carry no more than 5000 pounds. A delivery truck filled with identical boxes, each "
    "weighing 15 pounds, will pass over the bridge. The combined weight of the driver and the empty truck is "
    "3755 pounds. What is the maximum number of boxes which can be loaded onto the truck?",
    "Find the number of ordered pairs $(a, b)$ of integers with $1 \\le a, b \\le 100$ such that $a^2 + b^2$ "
    "is divisible by $7$ and $a + b$ is a perfect square. Explain each step.",
]


def timed_calls(path: str, threads: int, n: int) -> tuple[Any, list[float], list[float]]:
    """The loaded switcher, and the wall and CPU milliseconds of `n` single-query predictions after a warm-up."""
    switcher = load_switcher(path, threads=threads)
    for query in QUERIES * 5:  # warm-up: first calls allocate
        switcher.predict([query])
    wall, cpu = [], []
    for i in range(n):
        start, start_cpu = time.perf_counter(), time.process_time()
        switcher.predict([QUERIES[i % len(QUERIES)]])
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
    return switcher, wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--switcher", required=True, help="artifact directory")
    parser.add_argument("--threads", type=at_least(1), default=2, help="torch threads (default 2)")
    parser.add_argument("--n", type=at_least(2), default=200, help="timed calls (default 200)")
    args = parser.parse_args()
    # As in the gateway: loaded and run on one thread that is not the main one (`service.inference`).
    with inference_thread() as thread:
        switcher, wall, cpu = thread.submit(timed_calls, args.switcher, args.threads, args.n).result()
    print(f"switcher {switcher.version}: {args.n} single-query calls on {args.threads} threads")
    for name, times in (("wall", wall), ("cpu ", cpu)):
        q = statistics.quantiles(times, n=100)
        mean = statistics.fmean(times)
        print(f"{name}  p50 {q[49]:.2f} ms  p90 {q[89]:.2f} ms  p99 {q[98]:.2f} ms  mean {mean:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
