"""`switchyard sim --port P --model NAME`: run a vLLM API simulator (for fault tests and load benchmarks)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from router_models.cli.arguments import (
    fraction,
    non_blank,
    non_negative_float,
    non_negative_int,
    port_number,
    positive_int,
)
from service.sim.server import FAULT_MODES


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim", help="run a vLLM API simulator",
        description="Serve the vLLM OpenAI subset (chat, completions with echo/logprobs, streaming, /health, "
        "/metrics with vllm: names) with settable latency, token rate, concurrency and faults. "
        "Faults can also be switched at run time: POST /sim/fault {\"mode\": ..., \"rate\": ...}. "
        "For tests and benchmarks; it does not replace tests against real vLLM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    parser.add_argument("--port", type=port_number, required=True, help="listen port")
    parser.add_argument("--model", required=True, type=non_blank, help="served model name")
    parser.add_argument("--latency-ms", type=non_negative_float, default=0.0,
                        help="delay before the first token (default: 0)")
    parser.add_argument("--tokens-per-s", type=non_negative_float, default=0.0,
                        help="decode rate (default 0: all at once)")
    parser.add_argument("--max-concurrency", type=non_negative_int, default=0,
                        help="running slots; more requests wait (default 0: unlimited)")
    parser.add_argument("--max-tokens", type=positive_int, default=16,
                        help="tokens generated when max_tokens is unset (default: 16)")
    parser.add_argument("--max-model-len", type=positive_int, default=131072,
                        help="a larger max_tokens is refused with vLLM's 400 (default: 131072)")
    parser.add_argument("--first-word", type=non_negative_int, default=0, metavar="N",
                        help="answers are words of a fixed 10-word vocabulary, starting at word N (default: 0); "
                        "give two simulators different N and their answers differ, e.g. for fusion")
    parser.add_argument("--fault", choices=FAULT_MODES, default="none", help="fault to inject (default: none)")
    parser.add_argument("--fault-rate", type=fraction, default=1.0,
                        help="share of requests hit by the fault (default: 1.0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from service.sim.server import SimSettings, build_sim_app
    from service.upstream import host_and_port

    settings = SimSettings(
        model=args.model, latency_ms=args.latency_ms, tokens_per_s=args.tokens_per_s,
        max_concurrency=args.max_concurrency, default_max_tokens=args.max_tokens, first_word=args.first_word,
        max_model_len=args.max_model_len,
        fault=args.fault, fault_rate=args.fault_rate,
    )
    where = host_and_port(args.host, args.port)
    started = f"simulating vLLM serving {args.model!r} on http://{where} (Ctrl-C to quit)"
    web.run_app(build_sim_app(settings), host=args.host, port=args.port, access_log=None,
                handler_cancellation=True, print=lambda _: print(started, file=sys.stderr, flush=True))
    return 0
