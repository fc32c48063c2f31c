"""Start simulators and the gateway as separate processes for benchmarks (loopback only)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready in {timeout} s")


@contextlib.contextmanager
def process(args: list[str], ready_url: str, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **popen)
    try:
        wait_ready(ready_url, proc)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def sim_process(model: str, *options: str, prefix: list[str] | None = None) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [*(prefix or []), sys.executable, "-m", "service.cli", "sim", "--port", str(port), "--model", model,
            *options]
    with process(args, url + "/health"):
        yield url


def write_gateway_config(backends: dict[str, str], directory: Path, extra: dict[str, Any] | None = None) -> Path:
    config: dict[str, Any] = {
        "backends": [{"name": name, "model": name, "replicas": [url]} for name, url in backends.items()],
        "models": [{"name": name, "strategy": {"kind": "direct", "backend": name}} for name in backends],
    }
    for key, value in (extra or {}).items():
        config[key] = config.get(key, []) + value if isinstance(value, list) else value
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def gateway_process(backends: dict[str, str], directory: Path, *, prefix: list[str] | None = None,
                    extra: dict[str, Any] | None = None) -> Iterator[str]:
    port = free_port()
    config = write_gateway_config(backends, directory, extra)
    args = [*(prefix or []), sys.executable, "-m", "service.cli", "serve", "--config", str(config), "--port",
            str(port), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with process(args, url + "/ready"):
        yield url
