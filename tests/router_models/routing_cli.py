"""Run router_models subcommands in-process, as `switchyard` dispatches them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


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


@contextlib.contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve APP on loopback from an event loop in its own thread; yield its base URL (`http://127.0.0.1:PORT`)."""
    import asyncio
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
