"""The gateway run with the configuration the manifests ship, over simulators and a password-protected Redis.

Only the addresses change: backend Services become simulator ports, the Redis Service a local
redis-server. Keys, public paths, secrets-through-environment and model names are the shipped ones.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import yaml

from service.config import hash_api_key
from tests.harness import GatewayServer, SimProcess, free_port, wait_until

from .tools import K8S, require_tool

SHIPPED_CONFIG = K8S / "base" / "gateway" / "config.yaml"
DEV_API_KEY = "sk-switchyard-dev"


@contextlib.contextmanager
def redis_with_password(password: str) -> Iterator[int]:
    """A throw-away redis-server on loopback that demands `password`; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [require_tool("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--requirepass", password,
         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, what="redis-server")
        yield port
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def shipped_config(sims: dict[str, SimProcess], redis_port: int) -> dict[str, Any]:
    """The shipped gateway YAML with each backend pointed at the simulator serving its model."""
    text = SHIPPED_CONFIG.read_text().replace("@switchyard-redis:6379/", f"@127.0.0.1:{redis_port}/")
    config: dict[str, Any] = yaml.safe_load(text)
    for backend in config["backends"]:
        backend["replicas"] = [sims[backend["model"]].url]
    return config


@contextlib.contextmanager
def shipped_gateway(sims: dict[str, SimProcess]) -> Iterator[GatewayServer]:
    password = "live-test-redis-password"
    with pytest.MonkeyPatch.context() as env, redis_with_password(password) as redis_port:
        env.setenv("SWITCHYARD_API_KEY_HASH", hash_api_key(DEV_API_KEY))
        env.setenv("SWITCHYARD_REDIS_PASSWORD", password)
        with GatewayServer(shipped_config(sims, redis_port)) as server:
            yield server
