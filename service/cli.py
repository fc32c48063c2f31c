"""The `switchyard` command line: one subcommand per module.

Each module in `COMMANDS` exposes `register(subparsers)`, which adds its parser and sets
`func` to a callable taking the parsed arguments. Command modules import heavy dependencies
(torch, transformers) inside their handlers, so `switchyard --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from router_models.cli import exit_status

COMMANDS: tuple[str, ...] = (
    "service.commands.serve",
    "service.commands.sim",
    "service.commands.backends",
    "service.commands.demo",
    "router_models.cli.train",
    "router_models.cli.eval",
    "router_models.cli.split",
    "router_models.cli.collect",
    "router_models.cli.label",
    "router_models.thinkswitch.collect",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard",
        description=(
            "Switchyard: an OpenAI-compatible gateway in front of vLLM servers that picks the model "
            "(Lookahead routing), the reasoning mode (ThinkSwitcher) or fuses several models (Cool-Fusion)."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(f"switchyard {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
