"""`switchyard split`: write the train/val/test parts of routing data as files, for train and eval."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "split",
        help="write the train/val/test parts of routing data (deterministic, by id hash)",
        description="Split routing data files the way `switchyard train` does, and write OUT/train.jsonl.gz, "
        "OUT/val.jsonl.gz and OUT/test.jsonl.gz, e.g. to evaluate on the test part with `switchyard eval`.",
    )
    parser.add_argument(
        "--data", nargs="+", required=True, metavar="FILE", help="routing data (JSONL, .gz ok)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the three files")
    parser.add_argument(
        "--protocol", default="in-distribution", choices=["in-distribution", "leave-one-out"],
        help="in-distribution (default): every benchmark split 60/10/30 by id hash; leave-one-out: --holdout "
        "is the test part, the other benchmarks give train/val",
    )
    parser.add_argument("--holdout", metavar="BENCH", help="the benchmark held out (leave-one-out)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from router_models.data import SplitSpec, read_records, split_records, write_records
    from router_models.errors import InputError

    spec = SplitSpec(args.protocol, args.holdout)  # a bad protocol is reported before any file is read
    records = read_records(args.data)
    if not records:
        raise InputError(f"no data lines in {', '.join(args.data)}")
    parts = split_records(records, spec)
    for name, records in parts.items():
        path = Path(args.out) / f"{name}.jsonl.gz"
        write_records(records, path)
        counts = Counter(r.benchmark for r in records)
        print(f"{path}: {len(records)} lines ({', '.join(f'{b} {n}' for b, n in sorted(counts.items()))})")
    return 0
