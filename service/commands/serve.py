"""`switchyard serve --config FILE`: run the gateway."""

from __future__ import annotations

import argparse
import logging
import math
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from router_models.cli.arguments import port_number

if TYPE_CHECKING:
    import uvicorn

    from service.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the gateway",
        description="Run the OpenAI-compatible gateway described by a YAML config file "
        "(see README, Configuration). Listens on server.host:server.port unless overridden. "
        "SWITCHYARD_REDIS_URL, where set, overrides cache.redis_url. Exit status: 2 for a config that is "
        "not valid, 3 for a start-up failure (an artifact that cannot be loaded, a port that cannot be bound).",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="gateway YAML config")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=port_number, help="listen port (overrides server.port)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="log level of the gateway and uvicorn (default: info)")
    parser.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from service.app import create_app
    from service.config import ConfigError, load_settings

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"switchyard serve: {error}", file=sys.stderr)
        return 2
    try:
        serve_app(create_app(settings, freeze_heap=True), settings, host=args.host, port=args.port,
                  log_level=args.log_level, access_log=args.access_log)
    except CannotListen as error:
        print(f"switchyard serve: {error}", file=sys.stderr)
        return 3  # as for any other start-up failure
    return 0


class CannotListen(Exception):
    """The listen address cannot be bound (in use, not this machine's, a port that needs privileges)."""


def serve_app(app: Any, settings: Settings, *, host: str | None = None, port: int | None = None,
              log_level: str = "info", access_log: bool = False) -> None:
    """Run `app` under uvicorn until stopped. The port is bound first: one in use fails at once (exit 3),
    before the models load and the gateway says it is ready."""
    import uvicorn

    from service.upstream import host_and_port

    config = server_config(app, settings, host=host, port=port, log_level=log_level, access_log=access_log)
    sockets = listening_sockets(config.host, config.port, config.backlog)
    logging.getLogger("uvicorn.error").info("listening on http://%s; requests are taken once the gateway is ready "
                                            "(Ctrl-C to quit)", host_and_port(config.host, config.port))
    try:
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        for listening in sockets:
            listening.close()


def listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """A socket bound to each address `host` names (both of `localhost`'s, say), as asyncio would bind them;
    `CannotListen` saying why where one cannot be bound."""
    from service.upstream import host_and_port

    where = host_and_port(host, port)
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CannotListen(f"cannot listen on {where}: {error.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(addresses):
            sockets.append(socket.create_server(address, family=family, backlog=backlog))
    except OSError as error:
        for bound in sockets:
            bound.close()
        why = os.strerror(error.errno) if error.errno else str(error)
        raise CannotListen(f"cannot listen on {where}: {why}") from None
    return sockets


def server_config(app: Any, settings: Settings, *, host: str | None = None, port: int | None = None,
                  log_level: str = "info", access_log: bool = False) -> uvicorn.Config:
    """How the gateway is served, by `serve`, the demo and the tests alike: the guarded HTTP protocol with
    the request-head limits of `settings.server`, no proxy-header rewriting (the gateway reads no client
    address) and no `server` header (uvicorn checks it against two patterns on every response)."""
    import uvicorn

    from service.http_protocol import guarded_protocol

    server = settings.server
    grace_s = int(math.ceil(server.shutdown_timeout_s))
    return uvicorn.Config(
        app,
        host=host or server.host,
        port=port or server.port,
        log_level=log_level,
        access_log=access_log,
        loop="auto",
        http=guarded_protocol(server.max_head_bytes, server.head_timeout_s, server.body_timeout_s,
                              stop_cutoff_s=stop_cutoff(grace_s)),
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=grace_s,
    )


def stop_cutoff(grace_s: float) -> float:
    """When requests still open at shutdown end themselves (`service.http_protocol`): a second before
    uvicorn would cancel them, or halfway through a grace period shorter than two seconds."""
    return max(grace_s / 2, grace_s - 1.0)
