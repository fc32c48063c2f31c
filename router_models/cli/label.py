"""`switchyard label`: score collected responses (math answer match, unit tests, or a judge model)."""

from __future__ import annotations

import argparse
from typing import Any

from router_models.cli import check_output_file, key_from_env, refuse_given
from router_models.cli.arguments import positive_float, positive_int


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "label",
        help="score collected responses: math answer match, code unit tests, or a judge model",
        description="Read routing-data lines (e.g. from `switchyard collect`), score every response and "
        "append "
        "the scored lines to --out; rerunning skips lines already there. math needs meta.reference_answer, "
        "code needs meta.test_asserts (run in a subprocess with a timeout), judge needs --judge NAME=URL.",
    )
    parser.add_argument("--data", required=True, metavar="FILE", help="collected routing data")
    parser.add_argument("--out", required=True, metavar="FILE", help="scored routing data to write")
    parser.add_argument("--method", required=True, choices=["math", "code", "judge"])
    parser.add_argument("--judge", metavar="NAME=URL", help="judge model and API base (method judge)")
    parser.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable holding the judge's API key"
    )
    parser.add_argument("--concurrency", type=positive_int, default=4, help="lines scored at once (default 4)")
    parser.add_argument(
        "--timeout", type=positive_float, default=10.0, help="seconds per unit-test run (default 10)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from router_models.collect import CollectOptions, Endpoint
    from router_models.data import read_records
    from router_models.errors import InputError
    from router_models.labelling import label_file, labelled_ids, require_fields

    if args.method == "judge" and not args.judge:
        raise InputError("--method judge needs --judge NAME=URL")
    if args.method != "judge":
        refuse_given(args, {"judge": None, "api_key_env": None}, f"is for --method judge; --method {args.method} "
                     "asks no model")
    judge = Endpoint.parse(args.judge, key_from_env(args.api_key_env)) if args.judge else None
    out = Path(args.out)
    check_output_file("--out", out, parent_created=True)
    finished = labelled_ids(out)
    records = [r for r in read_records([args.data]) if r.id not in finished]
    require_fields(records, args.method, source=args.data)
    with tqdm(total=len(records), desc=f"label ({args.method})", unit="line") as bar:
        written, failed = asyncio.run(label_file(records, out, args.method, judge,
                                                 CollectOptions(concurrency=args.concurrency), args.timeout,
                                                 lambda: bar.update(1)))
    print(f"{out}: {written} lines scored, {len(finished)} already there")
    if failed:
        print(f"{len(failed)} lines could not be scored (rerun to retry them); the first: {failed[0]}", file=sys.stderr)
        return 1
    return 0
