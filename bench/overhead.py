"""Gateway overhead against the simulator: added latency p50/p99 and throughput, direct vs through Switchyard.

    python bench/overhead.py [--requests 2000] [--concurrency 1 32] [--pin]

Starts a simulator (instant backend) and `switchyard serve` over it on loopback, sends the same load
directly and through the gateway, and prints one row per concurrency level. With --pin the gateway
runs on core 0 (taskset) and the simulator and load generator on the others.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import run_load  # noqa: E402
from bench.servers import gateway_process, keep_off_core_0, off_core_0, pinned, sim_process  # noqa: E402
from router_models.cli.arguments import at_least  # noqa: E402

BODY = {"model": "sim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=at_least(1), default=2000,
                        help="requests per level and target (default 2000)")
    parser.add_argument("--concurrency", type=at_least(1), nargs="+", default=[1, 32],
                        help="closed-loop clients, one row each (default: 1 32)")
    parser.add_argument("--stream", action="store_true", help="streaming requests")
    parser.add_argument("--pin", action="store_true",
                        help="the gateway on core 0 (taskset), the simulator and this load generator on the others")
    args = parser.parse_args()
    pin, others = (pinned(0), off_core_0()) if args.pin else ([], [])
    if pin:
        keep_off_core_0()  # the load generator
    elif args.pin:
        print("--pin: needs taskset and two cores; nothing pinned", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp, sim_process("sim", prefix=others) as sim, \
            gateway_process({"sim": sim}, Path(tmp), prefix=pin) as gateway:
        print(f"{'concurrency':>11} {'direct rps':>10} {'gateway rps':>11} {'added p50 ms':>12} "
              f"{'added p99 ms':>12} {'errors':>6}")
        for concurrency in args.concurrency:
            direct = asyncio.run(run_load(sim + "/v1/chat/completions", BODY, concurrency=concurrency,
                                          requests=args.requests, stream=args.stream))
            through = asyncio.run(run_load(gateway + "/v1/chat/completions", BODY, concurrency=concurrency,
                                           requests=args.requests, stream=args.stream))
            added_p50 = (through.percentile(50) - direct.percentile(50)) * 1000
            added_p99 = (through.percentile(99) - direct.percentile(99)) * 1000
            print(f"{concurrency:>11} {direct.requests_per_s:>10.0f} {through.requests_per_s:>11.0f} "
                  f"{added_p50:>12.2f} {added_p99:>12.2f} {through.errors:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
