"""`switchyard train --kind KIND --data FILE... --out DIR`: train a model and write its artifact."""

from __future__ import annotations

import argparse
import functools
import importlib
from typing import Any

from router_models.cli import option_defaults, refuse_given

# kind -> "module:function"; the function takes the parsed arguments and returns an exit code.
TRAINERS: dict[str, str] = {
    "lookahead": "router_models.cli.train_router:train_command",
    "lookahead_causal": "router_models.cli.train_router:train_command",
    "mlc": "router_models.cli.train_router:train_command",
    "knn": "router_models.cli.train_router:train_command",
    "best_single": "router_models.cli.train_router:train_command",
    "random": "router_models.cli.train_router:train_command",
    "thinkswitch": "router_models.thinkswitch.train:train_command",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a router or the reasoning-mode switcher",
        description="Train a model on data files and write its artifact directory "
        "(safetensors weights + JSON manifest).",
    )
    parser.add_argument(
        "--kind",
        default="lookahead",
        choices=sorted(TRAINERS) or None,
        help="what to train (default: lookahead, the router the gateway loads)",
    )
    parser.add_argument(
        "--data", nargs="+", required=True, metavar="FILE", help="training data (JSONL, .gz ok)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="artifact directory to write")
    parser.add_argument(
        "--force", action="store_true", help="write into --out even if it holds something other than an "
        "artifact of this kind"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="JSON/YAML object of config fields for the kind (routers: router_models/lookahead/config.py; "
        "thinkswitch: docs/thinkswitch.md); the flags below override it",
    )
    parser.add_argument(
        "--epochs", type=float, help="passes over the training data (default: lookahead and mlc 1, lookahead_causal 2, "
        "thinkswitch 60, a whole number)"
    )
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    router = parser.add_argument_group(
        "router options",
        "Routers train on the 'train' part of the split of --data and pick their best checkpoint on its "
        "'val' part; the 'test' part is never read (`switchyard split` writes the parts as files).",
    )
    router_options = option_defaults(
        router.add_argument(
            "--protocol",
            choices=["in-distribution", "leave-one-out", "all"],
            default="in-distribution",
            help="in-distribution: every benchmark gives train/val/test by id hash (default); "
            "leave-one-out: --holdout BENCH is excluded; all: train on every line, no validation",
        ),
        router.add_argument("--holdout", metavar="BENCH", help="benchmark held out (leave-one-out)"),
        router.add_argument(
            "--candidates", metavar="A,B,...", help="routed models (default: meta.candidate_models)"
        ),
        router.add_argument(
            "--block-size",
            type=int,
            help="response slots per candidate (default: lookahead 8, 0 = MLC; lookahead_causal 64)",
        ),
        router.add_argument(
            "--max-query-tokens",
            type=int,
            help="query tokens the router reads (default: lookahead and mlc 64, knn 128, lookahead_causal 256)",
        ),
        router.add_argument(
            "--max-train-queries",
            type=int,
            help="train on a seeded subset of this size (0 = all; default: lookahead and mlc 1000, lookahead_causal 0)",
        ),
        router.add_argument("--k", type=int, help="neighbours averaged (knn; default 100)"),
        router.add_argument(
            "--resume", action="store_true", help="continue from DIR/checkpoint/ of an interrupted run"
        ),
    )
    parser.set_defaults(func=functools.partial(run, router_options=router_options))


def run(args: argparse.Namespace, router_options: dict[str, Any]) -> int:
    from router_models.encoder import loading_bars

    if args.kind == "thinkswitch":
        refuse_given(args, router_options, "does not apply to --kind thinkswitch")
    module_name, function_name = TRAINERS[args.kind].split(":")
    with loading_bars(not args.quiet):
        return int(getattr(importlib.import_module(module_name), function_name)(args) or 0)
