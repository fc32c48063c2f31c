"""Run router_models subcommands in-process, as `switchyard` dispatches them."""

from __future__ import annotations


def run_cli(*argv: str) -> int:
    """Run a router_models subcommand exactly as `switchyard` would dispatch it."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog="switchyard")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "eval", "split", "collect", "label"):
        importlib.import_module(f"router_models.cli.{name}").register(subparsers)
    args = parser.parse_args(list(argv))
    return int(args.func(args) or 0)


def switchyard(*argv: str) -> tuple[int, str]:
    """Run `switchyard ARGV` in-process as the console script does: (exit status, what it wrote to stderr)."""
    import contextlib
    import io

    from service.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = main(list(argv))
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else 1
    return status, err.getvalue()
