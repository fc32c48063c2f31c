"""`switchyard collect`: ask every candidate model every prompt of a file (resumable)."""

from __future__ import annotations

import argparse
from typing import Any

from router_models.cli import check_output_file, key_from_env
from router_models.cli.arguments import non_negative_float, positive_int
from router_models.errors import InputError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="collect every candidate's answers to a prompt file through OpenAI-compatible endpoints",
        description="Send each prompt of --prompts to every --model NAME=URL (chat completions) and append "
        "routing-data lines with the responses to --out. Rerunning skips prompts already in --out. "
        "Then score them with `switchyard label`.",
    )
    parser.add_argument(
        "--prompts",
        required=True,
        metavar="FILE",
        help='JSONL lines {"id", "prompt", "benchmark"?, "meta"?}; meta is copied to --out, and `label` scores '
        "against its reference_answer (math) or test_asserts (code)",
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=URL",
        help="a candidate: served model name and API base, e.g. qwen=http://127.0.0.1:8000/v1",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="routing data to write (JSONL, .gz ok)")
    parser.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight at once (default 8)")
    parser.add_argument(
        "--max-tokens", type=positive_int, default=1024, help="generation cap per answer (default 1024)"
    )
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="sampling temperature (default 0)")
    parser.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from router_models.collect import CollectOptions, Endpoint, collect, done_ids, read_prompts

    key = key_from_env(args.api_key_env)
    endpoints = [Endpoint.parse(spec, key) for spec in args.model]
    names = [endpoint.name for endpoint in endpoints]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise InputError(f"--model: candidates named more than once: {', '.join(repeated)}")
    out = Path(args.out)
    check_output_file("--out", out, parent_created=True)
    prompts = read_prompts(args.prompts)
    if not prompts:
        raise InputError(f"no prompts in {args.prompts}")
    finished = done_ids(out)
    pending = len([p for p in prompts if p["id"] not in finished])
    options = CollectOptions(args.max_tokens, args.temperature, args.concurrency)
    with tqdm(total=pending * len(endpoints), desc="collect", unit="req") as bar:
        written, failed = asyncio.run(collect(prompts, endpoints, out, options, lambda: bar.update(1)))
    print(f"{out}: {written} prompts written, {len(prompts) - pending} already there")
    if failed:
        print(f"{len(failed)} prompts failed (rerun to retry them); the first: {failed[0]}", file=sys.stderr)
    return 1 if failed else 0
