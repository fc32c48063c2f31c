"""`switchyard eval`: judge routers (`--router DIR ...`) or the reasoning-mode switcher (`--switcher DIR`)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

ROUTER_EVAL = "router_models.evaluate:eval_command"
SWITCHER_EVAL = "router_models.thinkswitch.evaluate:eval_command"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate router artifacts or the reasoning-mode switcher on data files",
        description="Evaluate artifacts side by side on data files in the documented format.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--router", action="append", metavar="DIR", help="router artifact (repeatable)")
    target.add_argument("--switcher", metavar="DIR", help="reasoning-mode switcher artifact")
    parser.add_argument("--data", nargs="+", required=True, metavar="FILE", help="evaluation data (JSONL, .gz ok)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the results as a PNG")
    parser.add_argument("--split", choices=("all", "train", "val", "test"),
                        help="evaluate only the questions of this id-hash split (switcher; default: all)")
    parser.add_argument("--target-drop", type=float, metavar="POINTS",
                        help="switcher: report the cheapest τ at most POINTS below always-long (default 1)")
    parser.add_argument("--short-retry", action=argparse.BooleanOptionalAction, default=None,
                        help="switcher: judge its long answers cut at the token cap as asked again in short "
                        "mode, as the gateway does (default: as the artifact was trained)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from router_models.errors import InputError

    if args.router:
        for flag in ("split", "target_drop", "short_retry"):
            if getattr(args, flag, None) is not None:
                raise InputError(f"--{flag.replace('_', '-')} applies to --switcher only")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InputError(f"--plot {args.plot}: the plot is a PNG image, its name must end in .png")
    module_name, function_name = (SWITCHER_EVAL if args.switcher else ROUTER_EVAL).split(":")
    return int(getattr(importlib.import_module(module_name), function_name)(args) or 0)
