"""Start simulators and the gateway as separate processes for benchmarks (loopback only)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from service.local_backends.process import log_tail

REPO = Path(__file__).resolve().parent.parent
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port that is free now, for a server to bind soon after. It lies below the kernel's range of
    source ports (a port from that range can be taken meanwhile by any outgoing connection, and then the
    server's bind fails), and it is never handed out twice by this process."""
    first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0]) if EPHEMERAL_RANGE.exists() else 32768
    candidates = range(max(first_ephemeral - 12000, 1024), first_ephemeral)
    if len(candidates) < 1000:  # a source-port range reaching down to the low ports: let the kernel choose
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for port in random.sample(candidates, len(candidates)):
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {candidates.start}-{candidates.stop - 1}")


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


def quoted(log: Path | None) -> str:
    """The end of a server's log, to add to why it failed (the file may be in a directory gone by then)."""
    return f"; its output, in {log}, ends:\n{log_tail(log, 20)}" if log is not None else ""


def pinned(core: int) -> list[str]:
    """The command prefix that runs a process on `core` alone (`taskset`), or none where that cannot be had
    (no taskset, one core)."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def off_core_0() -> list[str]:
    """The command prefix that runs a process (a simulator) on every core but 0, where `pinned(0)` runs the
    proxy; none where nothing can be pinned."""
    return ["taskset", "-c", f"1-{(os.cpu_count() or 2) - 1}"] if pinned(0) else []


def keep_off_core_0() -> None:
    """This process (a load generator) on every core but 0, where `pinned(0)` runs the proxy."""
    if pinned(0) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))


@contextlib.contextmanager
def process(args: list[str], ready_url: str, *, timeout: float = 60, log: Path | None = None,
            **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` in its own session until the block ends; ready when `ready_url` answers 200.

    With `log`, its output goes to that file, and a failure to start names the file and quotes its end
    (the file may live in a temporary directory that is gone once the error arrives)."""
    output = log.open("wb") if log is not None else None
    with output if output is not None else contextlib.nullcontext():
        proc = subprocess.Popen(args, cwd=REPO, start_new_session=True,
                                stdout=output if output is not None else subprocess.DEVNULL,
                                stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL, **popen)
    try:
        try:
            wait_ready(ready_url, proc, timeout)
        except RuntimeError as error:
            raise RuntimeError(f"{error}{quoted(log)}") from None
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
    with process(args, url + "/ready", log=directory / "gateway.log"):
        yield url


def gateway_command(config: Path, port: int, router: str | None, prefix: list[str] | None = None) -> list[str]:
    """`switchyard serve` when a router artifact is given, else the same gateway with the stand-in router."""
    module = ["service.cli", "serve", "--log-level", "warning"] if router else ["bench.standin"]
    return [*(prefix or []), sys.executable, "-m", *module, "--config", str(config), "--port", str(port)]


class Restartable:
    """A server process that can be killed (SIGKILL, like a crash) and started again on the same port."""

    def __init__(self, args: list[str], ready: Callable[[], bool], name: str, log: Path | None = None) -> None:
        self.args = args
        self.ready = ready
        self.name = name
        self.log = log  # where its output goes (appended across restarts); else nowhere
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Restartable:
        """Start it and wait until `ready()`; a server that fails to (or an interrupt meanwhile) is killed."""
        output = self.log.open("ab") if self.log is not None else None
        with output if output is not None else contextlib.nullcontext():
            self.proc = subprocess.Popen(self.args, cwd=REPO, start_new_session=True,
                                         stdout=output or subprocess.DEVNULL, stderr=output or subprocess.DEVNULL)
        try:
            self.wait(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait(self, timeout: float) -> None:
        """Until `ready()`; a process that exits or takes longer raises, quoting the end of its log."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {self.proc.returncode}" if self.proc.poll() is not None else "timed out"
                raise RuntimeError(f"{self.name} did not start ({why}){quoted(self.log)}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def sim_server(model: str, port: int | None = None, *options: str) -> tuple[Restartable, str]:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "service.cli", "sim", "--port", str(port), "--model", model, *options]
    return Restartable(args, lambda: _answers(url + "/health"), f"simulator {model}"), url


def redis_server(directory: Path) -> tuple[Restartable, str]:
    """A loopback redis-server without persistence: a restart loses every key, as a fresh Redis would."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make services installs it)")
    port = free_port()
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(directory)]
    return Restartable(args, lambda: _redis_answers(port), "redis"), f"redis://127.0.0.1:{port}/0"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
