"""`switchyard serve --config FILE`: run the gateway."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the gateway",
        description="Run the OpenAI-compatible gateway described by a YAML config file "
        "(see README, Configuration). Listens on server.host:server.port unless overridden.",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="gateway YAML config")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.config import ConfigError, load_settings

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"switchyard: {error}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.server.host,
        port=args.port or settings.server.port,
        log_level=args.log_level,
        access_log=args.access_log,
        loop="auto",
        http="auto",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )
    return 0
