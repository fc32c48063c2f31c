"""Real servers on loopback for tests: simulator processes and a gateway running under uvicorn."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import free_port
from service.app import create_app
from service.commands.serve import server_config
from service.config import parse_settings
from service.gateway import Gateway

REPO = Path(__file__).resolve().parent.parent


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


class SimProcess:
    """`switchyard sim` in its own process, so tests can kill it like a crashed replica."""

    def __init__(self, model: str, port: int | None = None, host: str = "127.0.0.1", **options: Any) -> None:
        self.model = model
        self.port = port or free_port()
        self.host = host  # any 127.x.y.z is loopback on Linux: replicas on one port at several addresses
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimProcess:
        args = [sys.executable, "-m", "service.cli", "sim", "--host", self.host, "--port", str(self.port),
                "--model", self.model]
        for key, value in self.options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(args, cwd=REPO, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: self.process.poll() is not None or _answers(self.url + "/v1/models"),
                   what=f"simulator {self.model} on {self.port}")
        assert self.process.poll() is None, self.process.stderr.read().decode() if self.process.stderr else ""
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def freeze(self) -> None:
        """Stop the process where it is (SIGSTOP), as an engine that deadlocked with its API server."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def set_fault(self, mode: str, rate: float = 1.0) -> None:
        httpx.post(self.url + "/sim/fault", json={"mode": mode, "rate": rate}, timeout=2).raise_for_status()

    def last_request(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/sim/last_request", timeout=2).json())


@dataclass
class Canned:
    """What a `CannedBackend` answers every POST with."""

    status: int = 200
    content_type: str = "application/json"
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


class CannedBackend:
    """An HTTP server on a loopback port, in a thread: healthy, and answering every POST with `canned` (answers
    no vLLM gives, or more bytes than the sockets hold)."""

    def __init__(self) -> None:
        self.canned = Canned()
        self.posts = 0  # POSTs received
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # /health, as the gateway's monitor asks
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                backend.posts += 1
                canned = backend.canned
                self.send_response(canned.status)
                self.send_header("Content-Type", canned.content_type)
                self.send_header("Content-Length", str(len(canned.body)))
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(canned.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GatewayServer:
    """The gateway app under a real uvicorn server on a loopback port, in a background thread."""

    def __init__(self, config: dict[str, Any], **gateway_options: Any) -> None:
        self.settings = parse_settings(config)
        self.gateway = Gateway(self.settings, **gateway_options)
        self.port = free_port()
        app = create_app(self.settings, gateway=self.gateway)
        config = server_config(app, self.settings, host="127.0.0.1", port=self.port, log_level="warning")
        config.lifespan = "on"
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayServer:
        self.thread.start()
        # a deadline, not a pause: loading a real artifact from a cold disk cache takes tens of seconds
        wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout=90, what="gateway start")
        assert self.server.started, "gateway failed to start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels` (0 when absent)."""
        return metric_value(httpx.get(self.url + "/metrics").text, name, **labels)


def metric_value(exposition: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def direct_config(backends: dict[str, list[str]], **sections: Any) -> dict[str, Any]:
    """A config with one `direct` public model per backend; each backend's model name is its own name."""
    config: dict[str, Any] = {
        "backends": [{"name": name, "model": name, "replicas": urls,
                      "timeouts": {"connect_s": 2, "first_byte_s": 20, "total_s": 30}}
                     for name, urls in backends.items()],
        "models": [{"name": name, "strategy": {"kind": "direct", "backend": name}} for name in backends],
        "dispatch": {"health_interval_s": 0.2, "scrape_interval_s": 0.1, "breaker_cooldown_s": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    return config


@contextlib.contextmanager
def sims(*models: str, **options: Any) -> Iterator[list[SimProcess]]:
    processes = [SimProcess(m, **options).start() for m in models]
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


class RedisServer:
    """A real `redis-server` on a loopback port, owned by the test; can be stopped and restarted."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: run `make services` (make test does)"
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, what=f"redis on {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
