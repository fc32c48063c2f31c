r"""Router inference latency (one query per call, p50/p99) and batch throughput.

    python bench/router_latency.py --router artifacts/router [--router DIR ...] --data FILE... \
        [--threads 2] [--queries 200] [--batch 32]

Queries are real prompts from the data files, cut to at most --max-tokens (256) MiniLM tokens; the
router reads at most its own configured query length. Prints the machine's load average too: on a
shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router_models import load_router  # noqa: E402
from router_models.cli.arguments import at_least  # noqa: E402
from router_models.data import read_records  # noqa: E402
from router_models.encoder import load_tokenizer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--router", action="append", required=True, metavar="DIR",
                        help="router artifact to time; repeat for several")
    parser.add_argument("--data", nargs="+", required=True, metavar="FILE",
                        help="routing data whose prompts are the queries")
    parser.add_argument("--threads", type=at_least(1), default=2, help="torch threads per router (default 2)")
    parser.add_argument("--queries", type=at_least(2), default=200, help="single-query calls timed (default 200)")
    parser.add_argument("--batch", type=at_least(1), default=32,
                        help="batch size for the throughput figure (default 32)")
    parser.add_argument("--max-tokens", type=at_least(1), default=256,
                        help="cut prompts to this many tokens (default 256)")
    args = parser.parse_args()

    tokenizer = load_tokenizer()
    rng = np.random.default_rng(0)
    prompts = [r.prompt for r in read_records(args.data)]
    picked = [prompts[i] for i in rng.choice(len(prompts), min(len(prompts), args.queries), replace=False)]
    queries: list[str] = [
        str(tokenizer.decode(tokenizer(p, add_special_tokens=False)["input_ids"][: args.max_tokens]))
        for p in picked
    ]
    median = statistics.median(len(tokenizer(q)["input_ids"]) for q in queries)
    print(
        f"{len(queries)} queries, median {median} tokens; {args.threads} threads; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for path in args.router:
        router = load_router(path, threads=args.threads)
        for q in queries[:5]:  # warm-up: first calls allocate
            router.score([q])
        times = []
        for q in queries:
            start = time.perf_counter()
            router.score([q])
            times.append(1000 * (time.perf_counter() - start))
        batches = [queries[i : i + args.batch] for i in range(0, len(queries), args.batch)]
        start = time.perf_counter()
        for batch in batches:
            router.score(batch)
        throughput = len(queries) / (time.perf_counter() - start)
        print(
            f"{router.kind:<12} {len(router.candidates)} candidates  p50 {percentile(times, 50):6.1f} ms  "
            f"p99 {percentile(times, 99):6.1f} ms  batch {args.batch}: {throughput:6.1f} queries/s  ({path})"
        )


if __name__ == "__main__":
    main()
