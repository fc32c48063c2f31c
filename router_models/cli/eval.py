"""`switchyard eval`: judge routers (`--router DIR ...`) or the reasoning-mode switcher (`--switcher DIR`)."""

from __future__ import annotations

import argparse
import functools
import importlib
import math
from typing import Any

from router_models.cli import check_output_file, option_defaults, refuse_given

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
    switcher_options = option_defaults(
        parser.add_argument("--split", choices=("all", "train", "val", "test"), default="all",
                            help="evaluate only the questions of this id-hash split (switcher; default: all)"),
        parser.add_argument("--target-drop", type=float, default=1.0, metavar="POINTS",
                            help="switcher: report the cheapest τ at most POINTS below always-long (default 1)"),
        parser.add_argument("--short-retry", action=argparse.BooleanOptionalAction, default=None,
                            help="switcher: judge its long answers cut at the token cap as asked again in short "
                            "mode, as the gateway does (default: as the artifact was trained)"),
    )
    parser.set_defaults(func=functools.partial(run, switcher_options=switcher_options))


def run(args: argparse.Namespace, switcher_options: dict[str, Any]) -> int:
    from router_models.errors import InputError

    if args.router:
        refuse_given(args, switcher_options, "applies to --switcher only")
    if not math.isfinite(args.target_drop):
        raise InputError(f"--target-drop: expected a finite number of points, got {args.target_drop}")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InputError(f"--plot {args.plot}: the plot is a PNG image, its name must end in .png")
    check_output_file("--json", args.json)
    check_output_file("--plot", args.plot)
    module_name, function_name = (SWITCHER_EVAL if args.switcher else ROUTER_EVAL).split(":")
    return int(getattr(importlib.import_module(module_name), function_name)(args) or 0)
