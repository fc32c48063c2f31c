"""`switchyard train --kind KIND --data FILE... --out DIR`: train a model and write its artifact."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# kind -> "module:function"; the function takes the parsed arguments and returns an exit code.
TRAINERS: dict[str, str] = {
    "thinkswitch": "router_models.thinkswitch.train:train_command",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a router or the reasoning-mode switcher",
        description="Train a model on data files and write its artifact directory "
        "(safetensors weights + JSON manifest).",
    )
    parser.add_argument("--kind", default="lookahead", choices=sorted(TRAINERS) or None,
                        help="what to train (default: lookahead, the router the gateway loads)")
    parser.add_argument("--data", nargs="+", required=True, metavar="FILE", help="training data (JSONL, .gz ok)")
    parser.add_argument("--out", required=True, metavar="DIR", help="artifact directory to write")
    parser.add_argument("--config", metavar="FILE", help="kind-specific options (JSON; see the kind's docs)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    module_name, function_name = TRAINERS[args.kind].split(":")
    return int(getattr(importlib.import_module(module_name), function_name)(args) or 0)
